"""The inference facade: the only model API bot/ and devices/ call.

Every call is one scheduler job declaring the model's resources, on the caller's lane and
owner; inside the job the manager holds the model loaded (loading it first if needed). Local
models run as THREAD jobs; remote ones (``ModelManager.is_remote``: OpenAI-compatible, Ollama,
Edge) as ASYNC jobs on the loop that hold only ``remote:<model>``, never a thread or a ``cpu``
slot, so a slow cloud API cannot delay local voice work.
Streaming calls (:meth:`Inference.chat`, :meth:`Inference.speak`) return the job handle:
``handle.stream()`` yields pieces and ``handle.cancel()`` stops within one token / chunk.
Every long job is a preemptible step job: when a higher lane waits for what it holds it pauses
at its next step (LLM and VL between tokens, TTS between chunks, ASR between audio windows,
SD between denoising steps), gives its CPU slot or GPU compute (and, where its state allows,
the model's slot) back, and resumes afterwards. Its GPU memory stays reserved while it is
paused, unless the manager offloads the model for another one (``ModelManager.hold``).
Models hosted on a Ray cluster (``ray.workers``, with ``ray.address`` set) run as ASYNC jobs
holding ``worker:<name>`` (and ``ray-node:<box>``) from :class:`core.workers.ray_pool.RayPool`:
the job awaits the actor's stream, its checkpoint runs at every step the actor reports.
Models placed in a worker process (vl and sd by default, ``models.<kind>.placement``) run as
ASYNC jobs too: the job awaits the worker (no thread), keeps the model's ``cpu``/``gpu:N`` and
``model:<name>`` resources, its checkpoint runs at every step the worker reports, and on a
GPU the model takes part in VRAM residency like an inline one (``ModelManager.hold_async``).
"""

# mypy: disable-error-code="type-abstract"
# (the model interfaces are ABCs; they are passed to ModelManager.use as isinstance targets)

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import ModelError
from core.models.asr import Asr, RemoteAsr, Transcript
from core.models.chat_context import fit_prompt
from core.models.chat_guard import ReplyGuard
from core.models.guarded_emit import GuardedEmitter
from core.models.llm import ChatEvent, ChatMessage, Llm, RemoteLlm, ToolSpec
from core.models.manager import ModelManager
from core.models.registry import TTS_REMOTE
from core.models.reply_language import expected_reply_language, language_of
from core.models.sd import DrawRequest, ImageGenerator, sd_configured
from core.models.settings import ModelsSettings
from core.models.tts import PcmChunk, RemoteTts, Tts
from core.models.tts_clips import ClipCache
from core.models.tts_routing import route_parts
from core.models.vad import Vad, VadModel
from core.models.vl import VisionLanguage, vl_configured
from core.scheduler import ExecMode, JobContext, JobHandle, JobSpec, Lane, Scheduler
from core.workers.base import WorkerCall
from core.workers.hosted import WorkerModel

if TYPE_CHECKING:  # no Ray import: the pool module imports Ray only when it starts
    from core.workers.ray_pool import RayPool

log = logging.getLogger(__name__)

_LABEL_CHARS = 40
# a reply that opens by copying the question (the guard's parrot rule) is generated again, a
# little hotter each time (the same prompt, so llama.cpp reuses its evaluated prefix): the
# first two attempts stop at models.llm.parrot_stop_chars copied characters, the third holds a
# copy to its end and drops it (an answer after it is sent) or, if that is all, says
# models.llm.parrot_reply (the question was not understood) instead. A
# reply opening in the other language than the question's is generated again the same way
PARROT_RETRY_TEMPERATURE_STEP = 0.3


class Inference:
    def __init__(
        self,
        scheduler: Scheduler,
        manager: ModelManager,
        settings: ModelsSettings,
        *,
        cluster: RayPool | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._manager = manager
        self._settings = settings
        self._cluster = cluster
        tts = settings.tts
        self.clips = ClipCache(tts.clip_cache_entries, tts.clip_cache_max_chars)

    def _on_cluster(self, model: str) -> RayPool | None:
        """The Ray pool when it hosts ``model``, else None (the model runs on this box)."""
        cluster = self._cluster
        return cluster if cluster is not None and cluster.serves(model) else None

    def _hosted(
        self, model: str, call: WorkerCall
    ) -> Callable[[JobContext], Awaitable[Any]] | None:
        """The job that runs ``call`` where ``model`` is hosted outside this process: on the Ray
        pool, or in the model's worker process (holding its VRAM residency, pausing at its
        steps); None when ``model`` runs in this process."""
        cluster = self._on_cluster(model)
        if cluster is not None:

            async def on_cluster(ctx: JobContext) -> Any:
                return await cluster.call(ctx, model, call)

            return on_cluster
        if not self._manager.in_worker(model):
            return None

        async def in_worker(ctx: JobContext) -> Any:
            async with self._manager.hold_async(model, WorkerModel, ctx.checkpoint) as held:
                return await held.backend.call(
                    call, on_step=held.astep(ctx.checkpoint), on_chunk=ctx.emit
                )

        return in_worker

    def _spec(
        self,
        model: str,
        *,
        lane: Lane,
        owner: str,
        label: str,
        preemptible: bool = False,
        stream_buffer: int | None = None,
        stateless_steps: bool = False,
    ) -> JobSpec:
        """``preemptible``: the job pauses at its steps when a higher lane needs what it holds;
        ``stateless_steps``: nothing of the job lives in the model between steps (ASR windows),
        so a paused job always gives the model's slot back."""
        cluster = self._on_cluster(model)
        if cluster is not None:
            return JobSpec(
                kind=model,
                lane=lane,
                owner=owner,
                mode=ExecMode.ASYNC,
                resources=cluster.job_resources(model, lane),
                preemptible=preemptible,
                keep_on_yield=cluster.kept_while_paused(model) if preemptible else frozenset(),
                stream_buffer=stream_buffer,
                label=label[:_LABEL_CHARS],
            )
        keep = frozenset() if stateless_steps else self._manager.kept_while_paused(model)
        remote = self._manager.is_remote(model)
        on_loop = remote or self._manager.in_worker(model)  # awaits a service or a worker
        return JobSpec(
            kind=model,
            lane=lane,
            owner=owner,
            mode=ExecMode.ASYNC if on_loop else ExecMode.THREAD,
            resources=self._manager.job_resources(model),
            preemptible=preemptible and not remote,  # a remote job has no steps to pause at
            keep_on_yield=keep if preemptible else frozenset(),
            stream_buffer=stream_buffer,
            label=label[:_LABEL_CHARS],
        )

    def configured(self, model: str) -> bool:
        """False when ``model`` ("sd", "vl") has no weights configured, so a request can be
        answered at once instead of failing inside a job; the other kinds ship defaults."""
        if model == "sd":
            return sd_configured(self._settings.sd)
        if model == "vl":
            return vl_configured(self._settings.vl)
        return True

    # -- voice activity ------------------------------------------------------------------------
    def new_vad(self) -> Vad:
        """A per-stream detector sharing the VAD model's weights; use it with detect_speech."""
        return SharedVad(self._manager.backend("vad", VadModel))

    async def detect_speech(
        self, vad: Vad, frames: Sequence[np.ndarray], *, owner: str, lane: Lane = Lane.REALTIME
    ) -> list[float]:
        """Speech probability of each frame (``vad.frame_samples`` int16 samples each)."""

        def run(ctx: JobContext) -> list[float]:
            with self._manager.use("vad", VadModel, ctx.checkpoint_blocking) as model:
                if isinstance(vad, SharedVad):
                    vad.bind(model, self._manager.entry("vad").loads)
                return [vad.speech_probability(frame) for frame in frames]

        spec = self._spec("vad", lane=lane, owner=owner, label=f"vad {len(frames)} frames")
        result: list[float] = await self._scheduler.submit(run, spec=spec).result()
        return result

    # -- speech recognition --------------------------------------------------------------------
    async def transcribe(
        self,
        pcm: np.ndarray,
        *,
        lane: Lane,
        owner: str,
        language: str | None = None,
        supersedes: str = "",
    ) -> Transcript:
        """Long audio is recognised in windows of ``asr.window_s`` cut at the quietest moment
        near each boundary, with a cancel/preemption point between windows: a cancelled or
        superseded job stops within one window. ``supersedes``: a newer job of ``owner`` with
        the same key cancels this one (a device's speculative transcriptions never stack)."""
        window_samples = int(self._settings.asr.window_s * 16_000)

        def run(ctx: JobContext) -> Transcript:
            with self._manager.hold("asr", Asr, ctx.checkpoint_blocking) as held:
                asr = held.backend
                texts: list[str] = []
                lang = language
                for piece in audio_windows(pcm, window_samples):
                    ctx.checkpoint_blocking(held)
                    part = asr.transcribe(piece, language=lang)
                    lang = lang or part.language  # the first window's language for the rest
                    if part.text.strip():
                        texts.append(part.text.strip())
                joiner = "" if lang in _NO_SPACE_LANGUAGES else " "
                return Transcript(joiner.join(texts), lang or "", len(pcm) / 16_000)

        async def run_remote(ctx: JobContext) -> Transcript:
            async with self._manager.use_async("asr", RemoteAsr) as asr:
                return await asr.atranscribe(pcm, language=language)

        seconds = len(pcm) / 16_000
        spec = self._spec(
            "asr",
            lane=lane,
            owner=owner,
            label=f"asr {seconds:.1f} s",
            preemptible=True,
            stateless_steps=True,
        )
        if supersedes:
            spec = dataclasses.replace(spec, supersedes=supersedes)
        job = run_remote if self._manager.is_remote("asr") else run
        result: Transcript = await self._scheduler.submit(job, spec=spec).result()
        return result

    # -- chat ----------------------------------------------------------------------------------
    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        lane: Lane,
        owner: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream_buffer: int | None = None,
        max_sentences: int | None = None,
    ) -> JobHandle[str]:
        """A streaming job: ``handle.stream()`` yields text pieces; ``stream_buffer``: pieces
        generated ahead of the consumer before the model waits (None: the scheduler's default);
        ``max_sentences``: the reply ends after that many sentences (None: no bound)."""
        handle: JobHandle[str] = self._chat(
            messages,
            tools=(),
            lane=lane,
            owner=owner,
            max_tokens=max_tokens,
            temperature=temperature,
            stream_buffer=stream_buffer,
            max_sentences=max_sentences,
        )
        return handle

    def chat_events(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec],
        lane: Lane,
        owner: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream_buffer: int | None = None,
        max_sentences: int | None = None,
    ) -> JobHandle[ChatEvent]:
        """Like :meth:`chat` with ``tools`` offered to the model: the stream yields text pieces
        and :class:`core.models.llm.ToolCall` requests (OpenAI style); the reply guard and
        ``max_sentences`` apply to the text, calls pass through."""
        handle: JobHandle[ChatEvent] = self._chat(
            messages,
            tools=tools,
            lane=lane,
            owner=owner,
            max_tokens=max_tokens,
            temperature=temperature,
            stream_buffer=stream_buffer,
            max_sentences=max_sentences,
        )
        return handle

    def _chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec],
        lane: Lane,
        owner: str,
        max_tokens: int | None,
        temperature: float | None,
        stream_buffer: int | None,
        max_sentences: int | None = None,
    ) -> JobHandle[Any]:
        llm_settings = self._settings.llm
        tokens = llm_settings.max_tokens if max_tokens is None else max_tokens
        temp = llm_settings.temperature if temperature is None else temperature
        history = list(messages)
        offered = list(tools)
        system = history[0].content if history and history[0].role == "system" else ""
        question = history[-1].content if history and history[-1].role == "user" else ""

        def new_guard(
            parrot_stop_chars: int | None = 0, language: str | None = None
        ) -> ReplyGuard | None:
            """``parrot_stop_chars``, ``language``: see ReplyGuard (None: no parrot rule, no
            language rule)."""
            if not (llm_settings.guard_replies or max_sentences is not None):
                return None
            return ReplyGuard(
                system_prompt=system if llm_settings.guard_replies else "",
                max_sentences=max_sentences,
                detect_loops=llm_settings.guard_replies,
                user_text=question if parrot_stop_chars is not None else "",
                parrot_stop_chars=parrot_stop_chars or 0,
                reply_language=language,
            )

        expected = expected_reply_language(question)
        unclear = llm_settings.parrot_reply.get(language_of(question) or "zh", "")

        def run(ctx: JobContext) -> None:
            with self._manager.hold("llm", Llm, ctx.checkpoint_blocking) as held:
                llm = held.backend
                fitted = fit_prompt(
                    history,
                    n_ctx=llm.context_tokens() or llm_settings.n_ctx,
                    max_tokens=tokens,
                    count=llm.count_tokens,
                )

                # between tokens: cancel point, pause handing over the model (its KV cache)
                step = held.step(ctx.checkpoint_blocking)

                if offered:
                    pieces: Iterator[Any] = llm.stream_chat_events(
                        fitted.messages,
                        tools=offered,
                        max_tokens=fitted.reply_tokens,
                        temperature=temp,
                        check=step,
                    )
                    # the text of a tool chat is guarded; a copied question is dropped (no
                    # retry: a call may have gone out already)
                    tool_guard = new_guard()
                    if tool_guard is None:
                        _emit_all(ctx, pieces)
                    else:
                        _emit_guarded(ctx, pieces, tool_guard)
                    return
                # parrot_stop_chars per attempt: the first ones stop a copy early, the last
                # holds it to its end (None: no rule; with the setting at 0, as before it:
                # hold, then send whatever comes). A reply opening in the other language is
                # generated again too, but the last attempt is sent whatever its language
                stop_chars = llm_settings.parrot_stop_chars
                attempts = (stop_chars, stop_chars, 0) if stop_chars else (0, None)
                for attempt, parrot_stop_chars in enumerate(attempts):
                    last = attempt == len(attempts) - 1
                    pieces = llm.stream_chat(
                        fitted.messages,
                        max_tokens=fitted.reply_tokens,
                        temperature=temp + attempt * PARROT_RETRY_TEMPERATURE_STEP,
                        check=step,
                    )
                    guard = new_guard(parrot_stop_chars, None if last else expected)
                    if guard is None:
                        _emit_all(ctx, pieces)
                        return
                    _emit_guarded(ctx, pieces, guard)
                    if guard.stop_reason not in ("parrot", "language"):
                        return
                    if last:
                        # nothing but the question, three times: say it was not understood
                        # (a misheard command copied back is no answer; silence would leave
                        # a device's speaker mute); no sentence for the language: the copy
                        ctx.emit_blocking(unclear or guard.generated)
                        return
                    log.debug("the reply was a %s miss; generating it again", guard.stop_reason)

        async def run_remote(ctx: JobContext) -> None:
            async with self._manager.use_async("llm", RemoteLlm) as llm:
                fitted = fit_prompt(
                    history,
                    n_ctx=llm.context_tokens() or llm_settings.n_ctx,
                    max_tokens=tokens,
                    count=llm.count_tokens,
                )
                events = llm.astream_chat(
                    fitted.messages,
                    tools=offered,
                    max_tokens=fitted.reply_tokens,
                    temperature=temp,
                )
                out = GuardedEmitter(ctx.emit, new_guard())
                async with contextlib.aclosing(events):  # leaving closes the HTTP stream
                    async for event in events:
                        if await out.push(event):
                            return
                    await out.finish()

        async def run_cluster(ctx: JobContext) -> None:
            assert cluster is not None
            # the tokenizer lives on the worker box: fit with one token per character, an upper
            # bound for Chinese and English text
            fitted = fit_prompt(history, n_ctx=llm_settings.n_ctx, max_tokens=tokens, count=len)
            method = "stream_chat_events" if offered else "stream_chat"
            extra: dict[str, Any] = {"tools": offered} if offered else {}
            call = WorkerCall(
                "llm",
                method,
                (fitted.messages,),
                {"max_tokens": fitted.reply_tokens, "temperature": temp, **extra},
            )
            out = GuardedEmitter(ctx.emit, new_guard())

            async def on_piece(piece: Any) -> None:
                if await out.push(piece):
                    raise _GuardStopped(out.stop_reason)

            try:
                await cluster.call(ctx, "llm", call, on_chunk=on_piece)
            except _GuardStopped:  # the actor stopped generating at that step
                return
            await out.finish()

        cluster = self._on_cluster("llm")
        last = history[-1].content if history else ""
        spec = self._spec(
            "llm",
            lane=lane,
            owner=owner,
            label=f"chat: {last}",
            stream_buffer=stream_buffer,
            preemptible=True,
        )
        if cluster is not None:
            return self._scheduler.submit(run_cluster, spec=spec)
        job = run_remote if self._manager.is_remote("llm") else run
        return self._scheduler.submit(job, spec=spec)

    # -- speech synthesis ----------------------------------------------------------------------
    def speak(
        self, text: str, *, lane: Lane, owner: str, sample_rate_hz: int
    ) -> JobHandle[PcmChunk]:
        """A streaming job: ``handle.stream()`` yields PcmChunk at ``sample_rate_hz``.

        With mixed TTS routes (``tts.languages`` naming local and remote voices) a text whose
        parts go to both is one relay job (no thread, no resources) that speaks each part as
        its own job, in order: local parts as THREAD jobs on ``tts``, remote parts as ASYNC
        jobs on ``tts_remote`` holding ``remote:tts``; the next part's job is submitted while
        the current one streams, so it is ready when the current part ends."""
        tts = self._settings.tts
        clip = self.clips.get(text, sample_rate_hz)
        if clip is not None:
            return self._speak_clip(text, clip, lane=lane, owner=owner)
        if not tts.mixed_routes:
            return self._speak_on("tts", text, lane=lane, owner=owner, rate_hz=sample_rate_hz)
        parts = route_parts(text, tts.remote_routes())
        if len(parts) <= 1:
            model = TTS_REMOTE if parts and parts[0].remote else "tts"
            return self._speak_on(model, text, lane=lane, owner=owner, rate_hz=sample_rate_hz)

        async def relay(ctx: JobContext) -> None:
            pending: deque[JobHandle[PcmChunk]] = deque()
            queued = deque(parts)

            def submit_next() -> None:
                if queued:
                    part = queued.popleft()
                    model = TTS_REMOTE if part.remote else "tts"
                    pending.append(
                        self._speak_on(
                            model, part.text, lane=lane, owner=owner, rate_hz=sample_rate_hz
                        )
                    )

            submit_next()
            try:
                while pending:
                    submit_next()  # the next part gets ready while this one streams
                    async for chunk in pending[0].stream():
                        await ctx.emit(chunk)
                    pending.popleft()
            finally:
                for handle in pending:
                    handle.cancel("the reply's speech was cancelled")

        spec = _loop_spec("tts:route", lane, owner, f"tts {len(parts)} parts: {text}")
        return self._scheduler.submit(relay, spec=spec)

    def _speak_clip(
        self, text: str, clip: Sequence[PcmChunk], *, lane: Lane, owner: str
    ) -> JobHandle[PcmChunk]:
        """A kept clip (core/models/tts_clips.py): a job on the loop, without a model."""

        async def replay(ctx: JobContext) -> None:
            for chunk in clip:
                await ctx.emit(chunk)

        spec = _loop_spec("tts:clip", lane, owner, f"tts clip: {text}")
        return self._scheduler.submit(replay, spec=spec)

    def _speak_on(
        self, model: str, text: str, *, lane: Lane, owner: str, rate_hz: int
    ) -> JobHandle[PcmChunk]:
        clips = self.clips

        def run(ctx: JobContext) -> None:
            with self._manager.hold(model, Tts, ctx.checkpoint_blocking) as held:
                chunks = held.backend.synthesize(
                    text, sample_rate_hz=rate_hz, check=held.step(ctx.checkpoint_blocking)
                )
                if not clips.wants(text):
                    _emit_all(ctx, chunks)
                    return
                spoken: list[PcmChunk] = []
                _emit_all(ctx, _recorded(chunks, spoken))
                clips.put(text, rate_hz, spoken)  # only reached when the whole clip was made

        async def run_remote(ctx: JobContext) -> None:
            async with self._manager.use_async(model, RemoteTts) as tts:
                chunks = tts.asynthesize(text, sample_rate_hz=rate_hz)
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        await ctx.emit(chunk)

        # only "tts" can be hosted (never tts_remote)
        call = WorkerCall(model, "synthesize", (text,), {"sample_rate_hz": rate_hz})
        job = self._hosted(model, call) or (run_remote if self._manager.is_remote(model) else run)
        spec = self._spec(model, lane=lane, owner=owner, label=f"tts: {text}", preemptible=True)
        return self._scheduler.submit(job, spec=spec)

    # -- vision --------------------------------------------------------------------------------
    async def see(
        self, image: bytes, question: str, *, owner: str, lane: Lane = Lane.INTERACTIVE
    ) -> str:
        result: str = await self._see(image, question, owner=owner, lane=lane).result()
        return result

    def see_stream(
        self, image: bytes, question: str, *, owner: str, lane: Lane = Lane.INTERACTIVE
    ) -> JobHandle[str]:
        """Like :meth:`see`, streaming: ``handle.stream()`` yields the answer's text pieces
        as the tokens are generated (the result is the whole answer)."""
        return self._see(image, question, owner=owner, lane=lane, stream=True)

    def _see(
        self, image: bytes, question: str, *, owner: str, lane: Lane, stream: bool = False
    ) -> JobHandle[str]:
        max_tokens = self._settings.vl.max_tokens

        def run(ctx: JobContext) -> str:
            with self._manager.hold("vl", VisionLanguage, ctx.checkpoint_blocking) as held:
                return held.backend.answer(
                    image,
                    question,
                    max_tokens=max_tokens,
                    check=held.step(ctx.checkpoint_blocking),  # paused: may be offloaded
                    emit=ctx.emit_blocking if stream else None,
                )

        spec = self._spec("vl", lane=lane, owner=owner, label=f"see: {question}", preemptible=True)
        call = WorkerCall("vl", "answer", (image, question), {"max_tokens": max_tokens}, stream)
        return self._scheduler.submit(self._hosted("vl", call) or run, spec=spec)

    def draw(
        self, request: DrawRequest, *, owner: str, lane: Lane = Lane.BACKGROUND
    ) -> JobHandle[bytes]:
        """A preemptible step job; ``await handle.result()`` gives PNG bytes."""

        def run(ctx: JobContext) -> bytes:
            with self._manager.hold("sd", ImageGenerator, ctx.checkpoint_blocking) as held:
                step = held.step(ctx.checkpoint_blocking)  # paused: may be offloaded meanwhile
                return held.backend.generate(request, check=step)

        spec = self._spec(
            "sd", lane=lane, owner=owner, label=f"draw: {request.prompt}", preemptible=True
        )
        call = WorkerCall("sd", "generate", (request,))
        return self._scheduler.submit(self._hosted("sd", call) or run, spec=spec)


class _GuardStopped(Exception):
    """Raised from a cluster chat's chunk callback when the reply guard ends the reply: the
    actor is told to abort at its step, and the job ends normally."""


_NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "yue"})  # written without spaces between words
_QUIET_FRAME = 1_600  # 0.1 s at 16 kHz: the unit in which a quiet cut point is searched
_CUT_SEARCH = 20  # frames before a window's end searched for the quietest one (2 s)


def audio_windows(pcm: np.ndarray, window_samples: int) -> Iterator[np.ndarray]:
    """``pcm`` in pieces of at most ``window_samples``, each cut (except the last) at the
    quietest 0.1 s of its final 2 s, so a boundary rarely splits a word."""
    start, total = 0, len(pcm)
    if window_samples <= 0 or total <= window_samples:
        yield pcm
        return
    while total - start > window_samples:
        end = start + window_samples
        search = min(_CUT_SEARCH, (window_samples // _QUIET_FRAME) // 2)
        frames = pcm[end - search * _QUIET_FRAME : end].reshape(search, _QUIET_FRAME)
        energy = np.square(frames.astype(np.float32)).mean(axis=1)
        cut = end - (search - int(np.argmin(energy))) * _QUIET_FRAME + _QUIET_FRAME // 2
        yield pcm[start:cut]
        start = cut
    yield pcm[start:]


def _loop_spec(kind: str, lane: Lane, owner: str, label: str) -> JobSpec:
    """A job on the loop that holds no model and no resource (it relays or replays audio)."""
    return JobSpec(
        kind=kind,
        lane=lane,
        owner=owner,
        mode=ExecMode.ASYNC,
        resources={},
        label=label[:_LABEL_CHARS],
    )


def _recorded(chunks: Iterator[PcmChunk], into: list[PcmChunk]) -> Iterator[PcmChunk]:
    """``chunks`` as they come, each also appended to ``into``."""
    try:
        for chunk in chunks:
            into.append(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _emit_all(ctx: JobContext, items: Iterator[Any]) -> None:
    """Stream ``items`` to the consumer. A cancel raised at emit closes the backend's generator
    right here (its ``finally`` frees the model's lock / HTTP response), not at garbage
    collection of whatever still references the frame."""
    try:
        for item in items:
            ctx.emit_blocking(item)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _emit_guarded(ctx: JobContext, pieces: Iterator[ChatEvent], guard: ReplyGuard) -> None:
    """Stream what ``guard`` lets through (tool calls pass as they are); once it stops the
    reply, close the model's stream (llama.cpp stops generating)."""
    try:
        for piece in pieces:
            if not isinstance(piece, str):
                ctx.emit_blocking(piece)
                continue
            out = guard.push(piece)
            if out:
                ctx.emit_blocking(out)
            if guard.stop_reason is not None:
                log.debug("reply ended by the guard: %s", guard.stop_reason)
                return
        rest = guard.finish()
        if rest:
            ctx.emit_blocking(rest)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


class SharedVad(Vad):
    """A per-stream detector bound to the shared VAD model inside each detect_speech job.

    The stream (and its recurrent state) is rebuilt if the model was reloaded in between.
    """

    def __init__(self, model: VadModel) -> None:
        self.sample_rate_hz = model.sample_rate_hz
        self.frame_samples = model.frame_samples
        self._stream: Vad | None = None
        self._loads = -1

    def bind(self, model: VadModel, loads: int) -> None:
        if self._stream is None or loads != self._loads:
            self._stream, self._loads = model.new_stream(), loads

    def speech_probability(self, frame: np.ndarray) -> float:
        if self._stream is None:
            raise ModelError("this VAD stream is used through Inference.detect_speech only")
        return self._stream.speech_probability(frame)

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.reset()
