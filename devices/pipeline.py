"""A device's voice loop: listen modes, endpointed utterances, turns, abort and barge-in.

Composed from the stages: a :class:`Listener` (VAD endpointing), a :class:`Turn` per reply and
the session state machine. One turn at a time; each turn has an id and the pipeline's
``generation``: bumping the generation before cancelling makes every message of the old turn
fail its gate, so nothing from a cancelled turn reaches the device even while its jobs are
still stopping. ``abort`` (or speech while THINKING/SPEAKING in realtime mode) cancels the
turn wherever it is (ASR, LLM or TTS) and sends ``tts stop``.

Speculation hides the end-of-speech hangover: at a pause (``speculate_after_ms``) a *held* turn
starts the whole ASR → LLM → TTS pipeline with its device-bound output held back. If the end is
then confirmed on the same audio it is adopted (THINKING, output released); if the utterance
differs, or the session aborts, listens again or closes, it is cancelled and the device never
hears of it. If speech resumes, it is not the answer either: with ``prefill_while_speaking``
it is *demoted* (:meth:`Turn.demote`) and runs on, unheard, until its LLM's first piece, so the
words said before the pause are evaluated in the LLM's context while the user goes on speaking
(a 15-25-token question costs ~0.3 s of prompt evaluation on 2 cores; after the end only the
words since the pause are left). At most one demoted turn runs; it is cancelled when a newer
one takes its place, at a new pause if it is still in ASR (the new ASR supersedes it), at the
confirmed end, and wherever a speculation is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.errors import ModelError, XiaoyouError
from devices.listener import ListenConfig, Listener, Utterance
from devices.mcp import McpClient
from devices.memory import DEFAULT_SYSTEM_PROMPT, ConversationMemory
from devices.ports import Outbox, VoiceInference
from devices.protocol import Abort, Error, Listen, Tts
from devices.session import SessionState, SessionStateMachine
from devices.tasks import TaskOwner
from devices.tool_warmup import ToolPromptWarmer
from devices.turn import Turn, TurnConfig, TurnOutcome

log = logging.getLogger(__name__)
ListenMode = Literal["auto", "manual", "realtime"]
_S = SessionState


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    listen: ListenConfig
    turn: TurnConfig
    max_exchanges: int = 6
    wake_words: frozenset[str] = frozenset()  # normalised with wake_key()
    wake_greeting: str = ""  # spoken on a wake word; empty: none
    failure_reply: str = ""  # spoken when a turn fails before it spoke; empty: silent
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    system_prompts: Mapping[str, str] | None = None  # by utterance language; None: defaults
    prefill_while_speaking: bool = True  # a speculation speech resumed after runs to its LLM
    warm_tool_prompt: bool = True  # the device's tools' prompt evaluated once they are listed


_NOT_IN_KEY = set(" \t\r\n,.!?;:'\"，。！？；：、…～~·“”‘’（）()")


def wake_key(text: str) -> str:
    """``text`` without punctuation, spaces and case: how 'listen detect' text is compared."""
    return "".join(ch for ch in text.casefold() if ch not in _NOT_IN_KEY)


@dataclass(frozen=True, slots=True)
class Speculation:
    key: tuple[int, int]  # the utterance's window span: adopted only by an end on the same audio
    turn: Turn
    task: asyncio.Task[TurnOutcome]


class VoicePipeline:
    def __init__(
        self,
        *,
        inference: VoiceInference,
        outbox: Outbox,
        state: SessionStateMachine,
        config: PipelineConfig,
        tasks: TaskOwner,
        tools: McpClient | None = None,
    ) -> None:
        self._inference = inference
        self.tools = tools  # the device's MCP tools (None: the device has no MCP)
        self._outbox = outbox
        self._state = state
        self._config = config
        self._tasks = tasks
        self.memory = ConversationMemory(
            max_exchanges=config.max_exchanges,
            system_prompt=config.system_prompt,
            system_prompts=config.system_prompts,
        )
        self.mode: ListenMode = "auto"
        self.generation = 0
        self.turn: Turn | None = None
        self._turn_task: asyncio.Task[TurnOutcome] | None = None
        self.last_turn: Turn | None = None
        self.listener = Listener(
            inference,
            config.listen,
            tasks,
            on_speech_start=self._on_speech_start,
            on_utterance=self._on_utterance,
            on_pause=self._on_pause,
            on_resume=self._on_resume,
        )
        # a held turn started during a pause, before the end of speech is certain
        self._speculation: Speculation | None = None
        # a speculation demoted when speech resumed: runs to its LLM's first piece, unheard
        self._prefill: Speculation | None = None
        self._warmer = ToolPromptWarmer(
            inference,
            owner=config.turn.owner,
            system_prompt=self.memory.system_prompt,
            busy=self._busy,
        )

    def _busy(self) -> bool:
        """Hearing speech or running a turn (held, demoted or heard)."""
        parts = (self.turn, self._speculation, self._prefill)
        return self.listener.in_speech or any(p is not None for p in parts)

    @property
    def speculation(self) -> Turn | None:
        """The held turn started at the last pause, if the end of speech is not confirmed yet."""
        return self._speculation.turn if self._speculation is not None else None

    # -- device events ---------------------------------------------------------------------
    async def on_listen(self, message: Listen) -> None:
        if message.state == "detect":
            await self._on_detect(message.text or "")
            return
        if message.state == "start":
            self.mode = message.mode or self.mode
            self._drop_speculation()
            if self.turn is not None and self.turn.typed:
                # the firmware follows 'detect' with 'listen start' at once (and sends 'abort'
                # first when it really wants to interrupt): the typed turn goes on
                self.listener.reset(use_vad=self.mode != "manual")
                return
            if self.turn is not None and self.mode != "realtime":
                await self.abort("listen start")  # the device stopped playing to listen again
            if self._state.state is not _S.LISTENING:
                self._move(_S.LISTENING)
            self.listener.reset(use_vad=self.mode != "manual")
            return
        utterance = self.listener.finish() if self._state.state is _S.LISTENING else None
        if utterance is not None and len(utterance.pcm) > 0:
            self._start_turn(utterance)
        else:
            self._drop_speculation()
            if self._state.state is _S.LISTENING:
                self._move(_S.READY)

    async def _on_detect(self, text: str) -> None:
        """Typed text or a wake word: a wake word gets the greeting (if configured), any other
        text is answered as if it had been spoken."""
        text = text.strip()
        owner = self._config.turn.owner
        if not wake_key(text):
            log.info("%s: listen detect without text", owner)
            return
        wake = wake_key(text) in self._config.wake_words
        if wake and not self._config.wake_greeting:
            log.info("%s: wake word %r (no greeting configured)", owner, text)
            return
        log.info("%s: %s %r", owner, "wake word" if wake else "typed text", text)
        if self.turn is not None:
            await self.abort("typed text")
        self._drop_speculation()
        if self._state.state is not _S.THINKING:
            self._move(_S.THINKING)
        turn = self._new_turn(held=False, started_s=time.monotonic())
        turn.typed = True
        turn.remember = not wake  # a greeting is no exchange worth a place in the memory
        self.turn = turn
        reply = self._config.wake_greeting if wake else None
        self._turn_task = self._tasks.spawn(
            self._run_turn(turn, text=text, reply=reply), f"turn{turn.turn_id}-typed"
        )

    def say(self, text: str) -> asyncio.Task[TurnOutcome] | None:
        """Speak ``text`` (no LLM, no memory) if the device is listening and nothing else runs;
        the task ends once it has been played (or aborted)."""
        if self.turn is not None or self._state.state is not _S.LISTENING:
            return None
        self._drop_speculation()
        self._move(_S.THINKING)
        turn = self._fixed_turn()
        self.turn = turn
        task = self._tasks.spawn(self._run_turn(turn, text="", reply=text), "say")
        self._turn_task = task
        return task

    async def warm_tool_prompt(self) -> None:
        """Once the device's tools are listed: their prompt evaluated while the device is idle
        (devices/tool_warmup.py; devices.warm_tool_prompt)."""
        tools = self.tools
        if self._config.warm_tool_prompt and tools is not None:
            await self._warmer.run(tools.tools)

    async def on_abort(self, message: Abort) -> None:
        await self.abort(message.reason or "device abort")

    def on_audio(self, pcm: np.ndarray) -> None:
        state = self._state.state
        if state is _S.LISTENING or (
            self.mode == "realtime" and state in (_S.THINKING, _S.SPEAKING)
        ):
            self.listener.feed(pcm)

    # -- turns -----------------------------------------------------------------------------
    async def abort(self, reason: str, *, only: Turn | None = None) -> None:
        """Cancel the current turn (if any; with ``only``, if it still is that turn), then tell
        the device to stop playing."""
        self._drop_speculation()  # silently: the device never heard of it
        if self.turn is None or (only is not None and self.turn is not only):
            return
        log.info("%s: abort turn %d (%s)", self._config.turn.owner, self.turn.turn_id, reason)
        self.generation += 1  # from here on the old turn's gate is closed
        task, self._turn_task, self.turn = self._turn_task, None, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=self._config.turn.cancel_timeout_s)
        await self._outbox.send_message(Tts(state="stop"))
        if self._state.state in (_S.THINKING, _S.SPEAKING):
            self._move(_S.LISTENING if self.mode == "realtime" else _S.READY)

    def _on_speech_start(self) -> None:
        self._warmer.interrupt()  # the utterance's ASR gets the CPU
        if self.mode == "realtime" and self.turn is not None:
            # only this turn: if a newer one has started by the time the task runs, keep it
            self._tasks.spawn(self.abort("barge-in", only=self.turn), "barge-in")

    def _on_utterance(self, utterance: Utterance) -> None:
        if self._state.state is _S.LISTENING or self.mode == "realtime":
            self._start_turn(utterance)
        else:
            self._drop_speculation()

    def _on_pause(self, utterance: Utterance) -> None:
        if self._state.state is not _S.LISTENING and self.mode != "realtime":
            return
        self._cancel_speculation()
        prefill = self._prefill
        if prefill is not None and prefill.turn.timings.transcribed_s is None:
            self._drop_prefill()  # still in ASR: this pause's ASR supersedes it
        turn = self._new_turn(held=True, started_s=utterance.ended_s)
        task = self._tasks.spawn(self._run_turn(turn, utterance), f"turn{turn.turn_id}-speculative")
        self._speculation = Speculation(utterance.key, turn, task)

    def _on_resume(self) -> None:
        """Speech came back after the pause: the held turn is not the answer. It is dropped, or
        demoted to a prefill if it has not got its LLM's first piece yet (then the words so
        far are being evaluated or soon will be)."""
        speculation = self._speculation
        if speculation is None:
            return
        if (
            not self._config.prefill_while_speaking
            or speculation.turn.timings.first_token_s is not None
            or speculation.task.done()
        ):
            self._cancel_speculation()
            return
        self._drop_prefill()
        self._speculation, self._prefill = None, speculation
        speculation.turn.demote()
        log.debug(
            "%s turn %d: demoted to prefill", self._config.turn.owner, speculation.turn.turn_id
        )

    def _cancel_speculation(self) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None:  # never released: its output is discarded with it
            speculation.task.cancel()

    def _drop_prefill(self) -> None:
        prefill, self._prefill = self._prefill, None
        if prefill is not None:
            prefill.task.cancel()

    def _drop_speculation(self) -> None:
        """The held turn and the demoted one, if any: neither is heard."""
        self._cancel_speculation()
        self._drop_prefill()

    def _take_speculation(self, utterance: Utterance) -> Speculation | None:
        self._drop_prefill()  # the end is confirmed: what it evaluated is in the context now
        if self._speculation is not None and self._speculation.key == utterance.key:
            speculation, self._speculation = self._speculation, None
            return speculation
        self._drop_speculation()
        return None

    def _fixed_turn(self) -> Turn:
        """A turn that speaks a fixed text now: no LLM, kept out of the memory."""
        turn = self._new_turn(held=False, started_s=time.monotonic())
        turn.typed, turn.remember = True, False
        return turn

    def _new_turn(self, *, held: bool, started_s: float) -> Turn:
        self._warmer.interrupt()  # a turn's CPU is not the warm-up's
        self.generation += 1  # closes the gate of every older turn
        turn_id = self.generation
        turn = Turn(
            turn_id,
            inference=self._inference,
            outbox=self._outbox,
            gate=lambda: self.generation == turn_id,
            memory=self.memory,
            config=self._config.turn,
            on_speaking=lambda: self._on_speaking(turn_id),
            held=held,
            tools=self.tools,
        )
        turn.timings.started_s = started_s  # a speculation's moves to the confirmed end
        return turn

    def _start_turn(self, utterance: Utterance) -> None:
        if self.turn is not None:  # realtime: a new utterance replaces the old reply at once
            old_task, self.turn, self._turn_task = self._turn_task, None, None
            if old_task is not None:  # its gate closes with the new turn's generation
                old_task.cancel()
        speculation = self._take_speculation(utterance)
        if self._state.state is not _S.THINKING:
            self._move(_S.THINKING)
        if speculation is not None:  # the end is where the pause was: adopt the held turn
            self.turn, self._turn_task = speculation.turn, speculation.task
            self.turn.timings.started_s = utterance.ended_s
            self.turn.release()
            return
        turn = self._new_turn(held=False, started_s=utterance.ended_s)
        self.turn = turn
        self._turn_task = self._tasks.spawn(self._run_turn(turn, utterance), f"turn{turn.turn_id}")

    async def _run_turn(
        self,
        turn: Turn,
        utterance: Utterance | None = None,
        *,
        text: str | None = None,
        reply: str | None = None,
    ) -> TurnOutcome:
        failed = True  # until run() returns: _turn_failed has told the device
        try:
            pcm = utterance.pcm if utterance is not None else None
            outcome = await turn.run(pcm, text=text, reply=reply)
            failed = False
        except XiaoyouError as exc:  # a model failed or the scheduler refused: tell, keep serving
            if turn.prefill_only:  # nobody waits for it: the real turn meets the fault itself
                log.debug("%s: prefill %d failed: %s", self._config.turn.owner, turn.turn_id, exc)
                return TurnOutcome.EMPTY
            log.warning("%s: turn %d failed: %s", self._config.turn.owner, turn.turn_id, exc)
            outcome = await self._turn_failed(turn, exc.code, _device_message(exc))
        except Exception as exc:  # a bug in one turn must not leave the device waiting forever
            log.exception("%s: turn %d crashed", self._config.turn.owner, turn.turn_id)
            message = f"internal error: {type(exc).__name__}"
            outcome = await self._turn_failed(turn, "internal", message)
        if turn.prefill_only:
            return outcome  # never the device's turn: nothing to close or to report
        self.last_turn = turn
        if (
            not failed
            and outcome is TurnOutcome.EMPTY
            and self.turn is turn
            and self.mode == "manual"
        ):
            # push-to-talk: the device stopped listening and waits for an answer; an empty
            # transcript (or nothing to say) still ends its turn
            await self._outbox.send_message(Tts(state="stop"))
        if self.turn is turn:  # not aborted
            self.turn, self._turn_task = None, None
            if not self._state.closed:
                after = _S.READY if self.mode == "manual" else _S.LISTENING
                if self._state.state is not after:
                    self._move(after)
                if after is _S.LISTENING:
                    self._drop_speculation()
                    self.listener.reset()
        return outcome

    async def _turn_failed(self, turn: Turn, code: str, message: str) -> TurnOutcome:
        if self.turn is turn:  # not aborted meanwhile: the device is still waiting for this turn
            await self._outbox.send_message(Error(code=code, message=message))
            if turn.spoke or not await self._apologise():
                # always close the turn: firmware ignores ``error`` and would wait for tts
                # forever (the apology, when spoken, closed it itself)
                await self._outbox.send_message(Tts(state="stop"))
        return TurnOutcome.EMPTY

    async def _apologise(self) -> bool:
        """Say ``failure_reply`` (the firmware shows no ``error``: the user would hear nothing,
        e.g. while the LLM's box is down); False if it could not be spoken."""
        text = self._config.failure_reply
        if not text:
            return False
        try:
            return await self._fixed_turn().run(None, text="", reply=text) is TurnOutcome.SPOKEN
        except XiaoyouError as exc:  # the voice is what failed: the error is all there is
            log.warning("%s: the apology was not spoken: %s", self._config.turn.owner, exc)
            return False

    def _on_speaking(self, turn_id: int) -> None:
        if turn_id == self.generation and self._state.state is _S.THINKING:
            self._move(_S.SPEAKING)

    def _move(self, target: SessionState) -> None:
        if not self._state.closed:
            self._state.move(target)

    async def close(self) -> None:
        tasks = [s.task for s in (self._speculation, self._prefill) if s is not None]
        self._drop_speculation()
        self.generation += 1
        if self._turn_task is not None:
            tasks.append(self._turn_task)
            self._turn_task.cancel()
        self._turn_task, self.turn = None, None
        if tasks:
            await asyncio.wait(tasks, timeout=self._config.turn.cancel_timeout_s)


def _device_message(exc: XiaoyouError) -> str:
    """What a device (and whoever reads its log) is told: no file paths or backend detail for
    model failures (those are in the server log and the admin API)."""
    if isinstance(exc, ModelError):
        return f"model unavailable ({exc.code}); see the server log"
    return exc.message
