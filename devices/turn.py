"""One conversational turn: utterance PCM → ASR → streamed LLM → per-sentence TTS → paced Opus.

Three stages run at once so sentence 1 is heard while sentence 2 is synthesised: this coroutine
streams the LLM and cuts sentences; a TTS task turns each sentence into Opus frames; a pacer
task sends them. Every device-bound message passes the turn's gate (its id still current), so
after an abort nothing of this turn reaches the device. Once the first sentence's TTS job
runs, the LLM is not read until it has audio (the LLM halts a couple of pieces ahead): on a
small CPU the first audio comes sooner when TTS does not share the cores with generation.
Cancelling the task running :meth:`Turn.run` cancels every scheduler job of the turn (each
stops at its next chunk).

A *held* turn is a speculation (started at a pause, before the end of speech is certain): it
runs every stage, but its output waits in a :class:`HeldOutput` until :meth:`Turn.release`;
it returns (or raises) only once released, and if cancelled before that it sends nothing and
leaves no trace in the conversation memory.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.scheduler import JobHandle, JobStatus, Lane
from devices.codec import OpusEncoder
from devices.held import HeldOutput
from devices.memory import ConversationMemory
from devices.pacer import PacedSender
from devices.ports import Gate, Outbox, VoiceInference
from devices.protocol import Llm, Stt, Tts
from devices.segmenter import SentenceSegmenter
from devices.tasks import TaskOwner

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
    cancel_timeout_s: float = 2.0


@dataclass(slots=True)
class TurnTimings:
    """Monotonic seconds; ``None`` until reached. For logs and benches."""

    started_s: float = field(default_factory=time.monotonic)
    transcribed_s: float | None = None
    first_token_s: float | None = None
    first_audio_s: float | None = None
    finished_s: float | None = None
    speculative: bool = False  # the turn started during the pause, before the end was certain

    def summary(self) -> str:
        """Seconds from the end of the utterance to each milestone."""
        marks = {
            "asr": self.transcribed_s,
            "first_token": self.first_token_s,
            "first_audio": self.first_audio_s,
            "done": self.finished_s,
        }
        spans = " ".join(
            f"{k}={v - self.started_s:.2f}s" for k, v in marks.items() if v is not None
        )
        return spans + (" (speculative)" if self.speculative else "")


# LLM pieces generated ahead of the reader: small, so the LLM pauses while the first
# sentence is synthesised instead of competing with TTS for the CPU
LLM_AHEAD_PIECES = 2

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
    ) -> None:
        self.turn_id = turn_id
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
        self._first_tts: JobHandle[Any] | None = None  # until that sentence has audio
        self._first_audio = asyncio.Event()  # the first sentence's TTS has produced audio
        self._emotion_sent = False

    @property
    def released(self) -> bool:
        return self._output.released

    def release(self) -> None:
        """The end of speech is confirmed: send what is held and let the rest through."""
        self._output.release()

    async def run(self, pcm: np.ndarray | None = None, *, text: str | None = None) -> TurnOutcome:
        """Answer ``pcm`` (float32 16 kHz) or a known ``text``; a held turn ends once released."""
        try:
            try:
                outcome = await self._run(pcm, text)
            except Exception:
                await self._stop()  # no stage may send anything of a failed turn at release
                await self._output.wait_released()  # its failure is reported once adopted
                raise
            await self._output.wait_released()  # e.g. an empty transcript, heard before the end
            return outcome
        finally:
            await self._stop()
            if self._output.released:
                self._memory.add(self.user_text, self.reply_text)
                log.info("%s turn %d: %s", self._config.owner, self.turn_id, self.timings.summary())
            else:  # a dropped speculation never happened
                log.debug("%s turn %d: speculation dropped", self._config.owner, self.turn_id)

    async def _stop(self) -> None:
        for handle in self._handles:
            handle.cancel("turn ended")
        await self._tasks.cancel_all(self._config.cancel_timeout_s)

    async def _run(self, pcm: np.ndarray | None, text: str | None) -> TurnOutcome:
        cfg = self._config
        if text is None:
            if pcm is None:
                raise ValueError("a turn needs pcm or text")
            transcript = await self._inference.transcribe(
                pcm, lane=cfg.lane, owner=cfg.owner, language=cfg.language
            )
            text = transcript.text
        self.timings.transcribed_s = time.monotonic()
        self.user_text = text.strip()
        if not self.user_text:
            return TurnOutcome.EMPTY
        await self._send(Stt(text=self.user_text))
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        items: asyncio.Queue[_Item | None] = asyncio.Queue()
        tts_task = self._tasks.spawn(self._synthesise(sentences, items), "tts")
        pace_task = self._tasks.spawn(self._pace(items), "pace")
        messages = self._memory.messages_for(self.user_text)
        handle = self._inference.chat(
            messages,
            lane=cfg.lane,
            owner=cfg.owner,
            max_tokens=cfg.max_tokens,
            stream_buffer=LLM_AHEAD_PIECES,
            max_sentences=cfg.max_sentences,
        )
        self._handles.append(handle)
        segmenter = SentenceSegmenter(first_max_chars=cfg.first_chunk_chars)
        pieces: list[str] = []
        async for piece in handle.stream():
            if not pieces:
                self.timings.first_token_s = time.monotonic()
            pieces.append(piece)
            self.reply_text = "".join(pieces)
            for sentence in segmenter.push(piece):
                await self._sentence(sentence, sentences)
            first_tts = self._first_tts
            if first_tts is not None and first_tts.status is JobStatus.RUNNING:
                # stop reading: the LLM halts LLM_AHEAD_PIECES later and the first sentence's
                # TTS gets the CPU (on 2 cores ~40 % faster alone). Only once that job runs:
                # it holds its resources and will finish, while the paused LLM job keeps its
                # own; pausing for a TTS job still queued behind paused LLM jobs of other
                # devices would deadlock them all.
                await self._first_audio.wait()
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

    async def _sentence(self, sentence: str, sentences: asyncio.Queue[str | None]) -> None:
        if not self._emotion_sent:  # the face to show while speaking, from the reply's first emoji
            emotion, emoji = emotion_of(self.reply_text)
            await self._send(Llm(emotion=emotion, text=emoji))
            self._emotion_sent = True
        if strip_emoji(sentence):
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
                if not self._first_audio.is_set():
                    self._first_tts = handle
                async for chunk in handle.stream():
                    for packet in encoder.encode(chunk.samples):
                        items.put_nowait(("audio", packet))
                    self._first_audio.set()
                self._handles.remove(handle)
                self._first_audio.set()  # even if it yielded no audio: let the LLM go on
        finally:
            self._first_audio.set()  # failed or cancelled: never leave the LLM reader waiting
            self._first_tts = None
        for packet in encoder.flush():
            items.put_nowait(("audio", packet))
        items.put_nowait(None)

    async def _pace(self, items: asyncio.Queue[_Item | None]) -> None:
        cfg = self._config
        pacer = PacedSender(self._output.send_audio, frame_ms=cfg.frame_ms, lead_ms=cfg.lead_ms)
        await self._output.wait_released()  # a speculation's audio starts (and is clocked) then
        while (item := await items.get()) is not None:
            kind, value = item
            if not self.spoke:
                self.spoke = True
                self._on_speaking()
                await self._send(Tts(state="start"))
            if kind == "sentence":
                await self._send(Tts(state="sentence_start", text=value))
            else:
                await pacer.send(value)
                if self.timings.first_audio_s is None:
                    self.timings.first_audio_s = time.monotonic()
        await pacer.drain()

    async def _send(self, message: Stt | Llm | Tts) -> None:
        await self._output.send(message)
