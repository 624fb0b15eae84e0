"""One conversational turn: utterance PCM → ASR → streamed LLM → per-sentence TTS → paced Opus.

Three stages run at once so sentence 1 is heard while sentence 2 is synthesised: this coroutine
streams the LLM and cuts sentences; a TTS task turns each sentence into Opus frames; a pacer
task sends them. Every device-bound message passes the turn's gate (its id still current), so
after an abort nothing of this turn reaches the device. Once the first sentence's TTS job
runs, the LLM's stream is held until it has audio (the LLM stops at its next piece): on a
small CPU the first audio comes sooner when TTS does not share the cores with generation.
Cancelling the task running :meth:`Turn.run` cancels every scheduler job of the turn (each
stops at its next chunk).

A *held* turn is a speculation (started at a pause, before the end of speech is certain): it
runs every stage, but its output waits in a :class:`HeldOutput` until :meth:`Turn.release`;
it returns (or raises) only once released, and if cancelled before that it sends nothing and
leaves no trace in the conversation memory. A held turn demoted (:meth:`Turn.demote`) when
speech resumed is never released: it runs on to the LLM's first piece and ends there, so the words
said so far are evaluated in the LLM's context while the user is still speaking.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.models.llm import ChatEvent, ChatMessage, ToolCall, ToolSpec
from core.scheduler import JobHandle, JobStatus, Lane
from devices.clock import clock_reply
from devices.codec import OpusEncoder
from devices.device_controls import Controls
from devices.held import HeldOutput
from devices.intents import missing, plan, run_steps
from devices.mcp import McpClient, McpError
from devices.memory import ConversationMemory
from devices.pacer import PacedSender
from devices.ports import Gate, Outbox, VoiceInference
from devices.protocol import Llm, Stt, Tts
from devices.segmenter import SentenceSegmenter
from devices.tasks import TaskOwner
from devices.tool_loop import TOOL_TEMPERATURE, ToolRun, error_result, tool_rounds, tool_specs

log = logging.getLogger(__name__)

# emoji → xiaozhi emotion name (the firmware's face set); the first one in a reply wins
_EMOTIONS = {
    "😊": "happy",
    "😄": "laughing",
    "😂": "funny",
    "😢": "sad",
    "😠": "angry",
    "😮": "surprised",
    "🤔": "thinking",
    "😉": "winking",
    "😎": "cool",
    "😍": "loving",
    "😌": "relaxed",
    "😴": "sleepy",
}
_DEFAULT_EMOTION = ("happy", "🙂")


def is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return cp >= 0x1F000 or 0x2600 <= cp <= 0x27BF or cp in (0xFE0F, 0x200D)


def strip_emoji(text: str) -> str:
    return "".join(ch for ch in text if not is_emoji(ch)).strip()


def emotion_of(text: str) -> tuple[str, str]:
    for ch in text:
        if ch in _EMOTIONS:
            return _EMOTIONS[ch], ch
    return _DEFAULT_EMOTION


class TurnOutcome(enum.Enum):
    SPOKEN = "spoken"  # the reply was played to the end
    EMPTY = "empty"  # nothing recognised, or nothing to say: no tts start was sent


@dataclass(frozen=True, slots=True)
class TurnConfig:
    owner: str  # "device:<id>": the scheduler's fairness unit
    lane: Lane = Lane.REALTIME
    downlink_sample_rate_hz: int = 24_000
    frame_ms: int = 60
    lead_ms: int = 300
    max_tokens: int | None = None
    max_sentences: int | None = 3  # a spoken reply: one to three short sentences
    language: str | None = None
    first_chunk_chars: int = 40  # see SentenceSegmenter.first_max_chars
    first_clause_hanzi: int = 2  # see SentenceSegmenter.first_soft_hanzi
    cancel_timeout_s: float = 2.0
    tool_timeout_s: float = 5.0  # one MCP tools/call on the device
    synthesise_ahead: bool = True  # False: the next sentence's TTS starts once this one played
    keyword_intents: bool = True  # common commands by keywords (devices/intents.py), no LLM
    clock_answers: bool = True  # "现在几点了" answered from the clock (devices/clock.py), no LLM
    utc_offset_min: int = 0  # the device's zone, for those answers
    llm_tools: bool = True  # the device's tools offered to the LLM as functions
    later_soft_chars: int = 20  # see SentenceSegmenter.soft_chars
    later_clause_hanzi: int = 0  # see SentenceSegmenter.soft_hanzi (0: off)


@dataclass(slots=True)
class TurnTimings:
    """Monotonic seconds; ``None`` until reached. For logs and benches."""

    started_s: float = field(default_factory=time.monotonic)
    transcribed_s: float | None = None
    first_token_s: float | None = None
    first_sentence_s: float | None = None  # the first sentence (or clause) went to TTS
    first_tts_s: float | None = None  # TTS returned its first audio
    first_audio_s: float | None = None
    finished_s: float | None = None
    speculative: bool = False  # the turn started during the pause, before the end was certain

    def summary(self) -> str:
        """Seconds from the end of the utterance to each milestone."""
        marks = {
            "asr": self.transcribed_s,
            "first_token": self.first_token_s,
            "sentence": self.first_sentence_s,
            "tts": self.first_tts_s,
            "first_audio": self.first_audio_s,
            "done": self.finished_s,
        }
        spans = " ".join(
            f"{k}={v - self.started_s:.2f}s" for k, v in marks.items() if v is not None
        )
        return spans + (" (speculative)" if self.speculative else "")


# a device's newer transcription cancels its older one (a speculation made stale by a new
# pause, a realtime utterance replacing the last): continuous speech never stacks ASR jobs
ASR_KEY = "device-asr"
# LLM pieces generated ahead of the reader (backpressure; the reader also holds the stream
# while a TTS job has the CPU to itself, see below)
LLM_AHEAD_PIECES = 2
# with less audio than this ready, a running TTS job has the CPU to itself (the LLM waits):
# about what Piper needs for a sentence on 2 shared cores, so playback does not run dry
TTS_FIRST_BELOW_S = 1.5

_Item = tuple[str, Any]  # ("sentence", str) | ("audio", bytes)


class Turn:
    def __init__(
        self,
        turn_id: int,
        *,
        inference: VoiceInference,
        outbox: Outbox,
        gate: Gate,
        memory: ConversationMemory,
        config: TurnConfig,
        on_speaking: Callable[[], None],
        held: bool = False,
        tools: McpClient | None = None,
    ) -> None:
        self.turn_id = turn_id
        self._tools = tools  # the device's MCP tools: common intents are run without the LLM
        self._inference = inference
        self._output = HeldOutput(outbox, gate, held=held)
        self._memory = memory
        self._config = config
        self._on_speaking = on_speaking
        self._handles: list[JobHandle[Any]] = []
        self._tasks = TaskOwner(f"{config.owner}:turn{turn_id}")
        self.timings = TurnTimings(speculative=held)
        self.user_text = ""
        self.reply_text = ""
        self.spoke = False  # tts start was sent
        self._tts: JobHandle[Any] | None = None  # the sentence being synthesised, until audio
        self._tts_progress = asyncio.Event()  # set at each chunk of audio and when a job ends
        self._pacer: PacedSender | None = None
        self._queued_frames = 0  # encoded, not yet handed to the pacer
        self._emotion_sent = False
        self.tool_calls: list[tuple[str, dict[str, Any], str]] = []  # (tool, arguments, result)
        self.tool_run = ToolRun()  # the LLM's tool rounds (devices/tool_loop.py)
        self.typed = False  # started from text ('listen detect'), not from an utterance
        self.remember = True  # False: the exchange stays out of the conversation memory
        self._llm: JobHandle[Any] | None = None  # the LLM round being read (its stream)
        self._prefill_only = False  # demoted: ends at the LLM's first piece, never released

    @property
    def released(self) -> bool:
        return self._output.released

    def release(self) -> None:
        """The end of speech is confirmed: send what is held and let the rest through."""
        self._output.release()

    @property
    def prefill_only(self) -> bool:
        return self._prefill_only

    def demote(self) -> None:
        """Speech resumed after the pause this held turn started at: it will never be released.
        It goes on to its LLM's first piece and ends there (nothing sent, nothing remembered):
        the words said so far are then in the LLM's context, and the whole utterance's prompt
        is evaluated only past them (llama.cpp reuses the common prefix). A device command
        (keyword intents) is not run."""
        self._prefill_only = True

    async def run(
        self, pcm: np.ndarray | None = None, *, text: str | None = None, reply: str | None = None
    ) -> TurnOutcome:
        """Answer ``pcm`` (float32 16 kHz) or a known ``text``; with ``reply`` speak that instead
        of asking the LLM (a wake-word greeting). A held turn ends once released."""
        try:
            try:
                outcome = await self._run(pcm, text, reply)
            except Exception:
                await self._stop()  # no stage may send anything of a failed turn at release
                if not self._prefill_only:
                    await self._output.wait_released()  # its failure is reported once adopted
                raise
            if not self._prefill_only:  # e.g. an empty transcript, heard before the end
                await self._output.wait_released()
            return outcome
        finally:
            await self._stop()
            if self._output.released:
                # a device command stays out of the memory: a remembered "把音量调到60" → "好的，
                # 音量已调到60。" without its call taught the small model to answer the next
                # command with a confirmation and no call (seen in the trial: "开灯" → "好的，
                # 灯已开启。", nothing called)
                if self.remember and not self.tool_calls:
                    self._memory.add(self.user_text, self.reply_text)
                log.info("%s turn %d: %s", self._config.owner, self.turn_id, self.timings.summary())
            else:  # a dropped speculation never happened
                log.debug("%s turn %d: speculation dropped", self._config.owner, self.turn_id)

    async def _stop(self) -> None:
        for handle in self._handles:
            handle.cancel("turn ended")
        await self._tasks.cancel_all(self._config.cancel_timeout_s)

    async def _run(
        self, pcm: np.ndarray | None, text: str | None, reply: str | None
    ) -> TurnOutcome:
        cfg = self._config
        if text is None:
            if pcm is None:
                raise ValueError("a turn needs pcm or text")
            transcript = await self._inference.transcribe(
                pcm, lane=cfg.lane, owner=cfg.owner, language=cfg.language, supersedes=ASR_KEY
            )
            text = transcript.text
        self.timings.transcribed_s = time.monotonic()
        self.user_text = text.strip()
        if not self.user_text and reply is None:
            return TurnOutcome.EMPTY
        if self.user_text:  # (a fixed reply without user text: the server speaks first)
            await self._send(Stt(text=self.user_text))
        if (
            reply is None
            and not self._prefill_only
            and cfg.keyword_intents
            and self._tools is not None
            and self._tools.tools
        ):
            reply = await self._device_tool(self._tools, self.user_text)
        if reply is None and not self._prefill_only and cfg.clock_answers:
            reply = clock_reply(
                self.user_text, utc_offset_min=cfg.utc_offset_min, now_s=time.time()
            )
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        items: asyncio.Queue[_Item | None] = asyncio.Queue()
        tts_task = self._tasks.spawn(self._synthesise(sentences, items), "tts")
        pace_task = self._tasks.spawn(self._pace(items), "pace")
        segmenter = SentenceSegmenter(
            first_max_chars=cfg.first_chunk_chars,
            first_soft_hanzi=cfg.first_clause_hanzi,
            soft_chars=cfg.later_soft_chars,
            soft_hanzi=cfg.later_clause_hanzi,
        )
        pieces: list[str] = []
        async for piece in self._reply_pieces(reply):
            if self._prefill_only:  # the prompt is evaluated: all a demoted turn was for
                return TurnOutcome.EMPTY
            if not pieces:
                self.timings.first_token_s = time.monotonic()
            pieces.append(piece)
            self.reply_text = "".join(pieces)
            for sentence in segmenter.push(piece):
                await self._sentence(sentence, sentences)
            if self._tts is None and not sentences.empty():
                await asyncio.sleep(0)  # the TTS task takes the sentence and starts its job
            while (
                (tts := self._tts) is not None
                and tts.status is JobStatus.RUNNING
                and self.audio_ahead_s() < TTS_FIRST_BELOW_S
                and (not self.spoke or not sentences.empty())
            ):
                # the device is about to run dry and the text is ahead of the voice (the first
                # sentence, or a next sentence already waiting for TTS): the LLM's stream is
                # held, so the LLM stops at its next piece and the running TTS job gets the CPU
                # (on 2 cores ~40 % faster alone). With audio queued, or when the LLM is what
                # the next sentence waits for, both run at once. Only once that job runs: it
                # holds its resources and will finish, while the held LLM job keeps its own;
                # holding for a TTS job still queued behind held LLM jobs of other devices
                # would deadlock them all. Checked again at each chunk of audio.
                self._tts_progress.clear()
                llm = self._llm
                if llm is not None:
                    llm.hold_stream()
                try:
                    await self._tts_progress.wait()
                finally:
                    if llm is not None:
                        llm.hold_stream(False)
        for sentence in segmenter.flush():
            await self._sentence(sentence, sentences)
        sentences.put_nowait(None)
        await tts_task
        await pace_task
        self.timings.finished_s = time.monotonic()
        if not self.spoke:
            return TurnOutcome.EMPTY
        await self._send(Tts(state="stop"))
        return TurnOutcome.SPOKEN

    async def _device_tool(self, tools: McpClient, text: str) -> str | None:
        """Run the device tools a common command asks for (devices/intents.py, from the tools
        the device declared); the spoken reply, or None when ``text`` is no such command (the
        LLM answers it)."""
        controls = Controls.of(tools.tools)
        steps = plan(text, controls)
        if not steps:
            lacking = missing(text, controls)
            return None if lacking is None else f"抱歉，这台设备没有{lacking.name_zh}，我控制不了。"
        await self._output.wait_released()  # a speculation must not touch the device
        timeout_s = self._config.tool_timeout_s

        async def call(name: str, arguments: dict[str, Any]) -> str:
            try:
                return await tools.call(name, arguments, timeout_s=timeout_s)
            except McpError as exc:
                log.warning("%s: tool %s failed: %s", self._config.owner, name, exc.message)
                raise

        outcome = await run_steps(steps, call)
        self.tool_calls.extend(outcome.calls)
        log.info("%s: keyword calls %s", self._config.owner, [c[:2] for c in outcome.calls])
        return outcome.reply

    async def _reply_pieces(self, reply: str | None) -> AsyncIterator[str]:
        """The reply as it is generated: the LLM's stream (with the device's tools, if it has
        any: see devices/tool_loop.py), or the fixed ``reply`` at once."""
        if reply is not None:
            yield reply
            return
        cfg = self._config
        messages = self._memory.messages_for(self.user_text)
        tools = self._tools
        if cfg.llm_tools and tools is not None and tools.tools:
            async for piece in tool_rounds(
                messages,
                tool_specs(tools.tools),
                chat=self._chat_round,
                call=lambda c: self._llm_tool(tools, c),
                run=self.tool_run,
            ):
                yield piece
            return
        async for event in self._chat_round(messages, ()):
            if isinstance(event, str):
                yield event

    async def _chat_round(
        self, messages: list[ChatMessage], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ChatEvent]:
        """One LLM job: its text pieces (and tool calls when ``tools`` are offered)."""
        cfg = self._config
        handle: JobHandle[Any]
        if tools:
            handle = self._inference.chat_events(
                messages,
                tools=tools,
                lane=cfg.lane,
                owner=cfg.owner,
                max_tokens=cfg.max_tokens,
                temperature=TOOL_TEMPERATURE,
                stream_buffer=LLM_AHEAD_PIECES,
                max_sentences=cfg.max_sentences,
            )
        else:
            handle = self._inference.chat(
                messages,
                lane=cfg.lane,
                owner=cfg.owner,
                max_tokens=cfg.max_tokens,
                temperature=TOOL_TEMPERATURE if self.tool_run.calls else None,
                stream_buffer=LLM_AHEAD_PIECES,
                max_sentences=cfg.max_sentences,
            )
        self._handles.append(handle)
        self._llm = handle
        try:
            async for event in handle.stream():
                yield event
        finally:
            self._llm = None
            handle.cancel("round ended")  # a no-op once finished; stops a round left early

    async def _llm_tool(self, tools: McpClient, call: ToolCall) -> str:
        """Run a call the LLM made; the result (or the failure) as text for the model."""
        await self._output.wait_released()  # a speculation must not touch the device
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            return error_result("arguments are not JSON")
        if not isinstance(arguments, dict):
            return error_result("arguments must be an object")
        tool = tools.tool(call.name)
        if tool is not None:  # the model may add keys (its schema, other tools' arguments)
            declared = tool.properties()
            arguments = {k: v for k, v in arguments.items() if k in declared}
        try:
            result = await tools.call(call.name, arguments, timeout_s=self._config.tool_timeout_s)
        except McpError as exc:
            log.warning("%s: tool %s failed: %s", self._config.owner, call.name, exc.message)
            result = error_result(exc.message)
        else:
            self.tool_calls.append((call.name, arguments, result))
        log.info("%s: LLM called %s %s → %s", self._config.owner, call.name, arguments, result)
        return result

    async def _sentence(self, sentence: str, sentences: asyncio.Queue[str | None]) -> None:
        if not self._emotion_sent:  # the face to show while speaking, from the reply's first emoji
            emotion, emoji = emotion_of(self.reply_text)
            await self._send(Llm(emotion=emotion, text=emoji))
            self._emotion_sent = True
        if strip_emoji(sentence):
            if self.timings.first_sentence_s is None:
                self.timings.first_sentence_s = time.monotonic()
            sentences.put_nowait(sentence)

    async def _synthesise(
        self, sentences: asyncio.Queue[str | None], items: asyncio.Queue[_Item | None]
    ) -> None:
        cfg = self._config
        encoder = OpusEncoder(cfg.downlink_sample_rate_hz, cfg.frame_ms)
        try:
            while (sentence := await sentences.get()) is not None:
                items.put_nowait(("sentence", sentence))
                handle = self._inference.speak(
                    strip_emoji(sentence),
                    lane=cfg.lane,
                    owner=cfg.owner,
                    sample_rate_hz=cfg.downlink_sample_rate_hz,
                )
                self._handles.append(handle)
                self._tts = handle
                async for chunk in handle.stream():
                    if self.timings.first_tts_s is None:
                        self.timings.first_tts_s = time.monotonic()
                    for packet in encoder.encode(chunk.samples):
                        items.put_nowait(("audio", packet))
                        self._queued_frames += 1
                    self._tts_progress.set()
                self._handles.remove(handle)
                self._tts = None
                self._tts_progress.set()  # even if it yielded no audio: let the LLM go on
                if not cfg.synthesise_ahead:
                    await self._played()
        finally:
            self._tts = None
            self._tts_progress.set()  # failed or cancelled: never leave the LLM reader waiting
        for packet in encoder.flush():
            items.put_nowait(("audio", packet))
        items.put_nowait(None)

    async def _pace(self, items: asyncio.Queue[_Item | None]) -> None:
        cfg = self._config
        pacer = PacedSender(self._output.send_audio, frame_ms=cfg.frame_ms, lead_ms=cfg.lead_ms)
        self._pacer = pacer
        await self._output.wait_released()  # a speculation's audio starts (and is clocked) then
        announce: str | None = None  # the sentence whose first frame is not ready yet
        while (item := await items.get()) is not None:
            kind, value = item
            if kind == "audio":
                self._queued_frames -= 1
            if kind == "sentence":
                # announced with its first frame; a sentence whose audio is shorter than a
                # frame shares the next one, and its text is shown with the next sentence's
                announce = value if announce is None else f"{announce}{value}"
                continue
            # the firmware mutes its microphone on 'tts start' and shows the text on
            # 'sentence_start': both go out only once there is audio to play right after them
            if not self.spoke:
                self.spoke = True
                self._on_speaking()
                await self._send(Tts(state="start"))
            if announce is not None:
                await self._send(Tts(state="sentence_start", text=announce))
                announce = None
            await pacer.send(value)
            if self.timings.first_audio_s is None:
                self.timings.first_audio_s = time.monotonic()
        await pacer.drain()

    async def _played(self) -> None:
        """Until the device has played every frame queued so far (the baseline order)."""
        while (ahead_s := self.audio_ahead_s()) > 0:  # noqa: ASYNC110 - playback is a clock
            await asyncio.sleep(min(ahead_s, 0.05))

    def audio_ahead_s(self) -> float:
        """Audio ready but not yet played: queued on the device plus encoded, not yet sent."""
        pacer = self._pacer
        queued_s = self._queued_frames * self._config.frame_ms / 1000
        if pacer is None or pacer.play_end_s is None:
            return queued_s
        return max(0.0, pacer.play_end_s - time.monotonic()) + queued_s

    async def _send(self, message: Stt | Llm | Tts) -> None:
        await self._output.send(message)
