"""Test doubles of the inference facade: the same methods, tiny jobs on the REAL scheduler.

Costs are fixed sleeps (``*_s``) split into chunks with checkpoints, so cancellation behaves as
with real backends (stops at the next chunk). Audio out is a 440 Hz tone; the VAD calls any
window louder than ``speech_rms`` speech.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.models.asr import Transcript
from core.models.llm import ChatEvent, ChatMessage, ToolSpec
from core.models.tts import PcmChunk
from core.models.vad import Vad
from core.scheduler import JobContext, JobHandle, JobSpec, Lane, Scheduler


class EnergyVad(Vad):
    frame_samples = 512

    def __init__(self, speech_rms: float = 300.0) -> None:
        self.speech_rms = speech_rms

    def speech_probability(self, frame: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
        return 1.0 if rms >= self.speech_rms else 0.0


@dataclass
class FakeInference:
    scheduler: Scheduler
    transcript: str = "what is the capital of australia"
    reply: str = (
        "Canberra is the capital of Australia. It is about three hundred kilometres from Sydney."
    )
    vad_s: float = 0.0
    asr_s: float = 0.05
    token_s: float = 0.005
    tts_chunk_s: float = 0.01
    tts_chunk_ms: int = 200
    tts_ms_per_char: float = 12.0
    started: dict[str, int] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)
    cancelled: dict[str, int] = field(default_factory=dict)
    chat_prompts: list[list[ChatMessage]] = field(default_factory=list)
    chat_max_sentences: list[int | None] = field(default_factory=list)
    chat_buffers: list[int | None] = field(default_factory=list)  # stream_buffer per chat
    # "llm" / "tts" per chunk, "tts-start" when a TTS job starts running, in order
    emitted: list[str] = field(default_factory=list)
    resources: dict[str, int] = field(default_factory=dict)  # declared by every job
    chat_error: Exception | None = None  # raised by the LLM job before its first piece
    asr_audio_s: list[float] = field(default_factory=list)
    asr_supersedes: list[str] = field(default_factory=list)  # the key of each ASR job
    # LLM rounds with tools (chat_events): each round emits the next scripted list of events
    # (text pieces and ToolCalls); with the script used up, the words of ``reply``
    tool_script: list[list[ChatEvent]] = field(default_factory=list)
    tool_offers: list[list[str]] = field(default_factory=list)  # tool names offered per round
    chat_lanes: list[Lane] = field(default_factory=list)  # the lane of each LLM job
    # CPU sharing: TTS chunks take this many times longer while an LLM job computes a token
    # (real backends on 2 cores: Piper ~1.7x slower beside llama.cpp)
    tts_contention: float = 1.0
    _llm_computing: int = 0

    def _count(self, table: dict[str, int], kind: str) -> None:
        table[kind] = table.get(kind, 0) + 1

    def _submit(
        self,
        kind: str,
        fn: Any,
        *args: Any,
        owner: str,
        lane: Lane,
        stream_buffer: int | None = None,
        supersedes: str = "",
    ) -> JobHandle[Any]:
        async def job(ctx: JobContext, *a: Any) -> Any:
            self._count(self.started, kind)
            try:
                result = await fn(ctx, *a)
            except BaseException:
                self._count(self.cancelled, kind)
                raise
            self._count(self.finished, kind)
            return result

        spec = JobSpec(
            kind=kind,
            lane=lane,
            owner=owner,
            resources=self.resources,
            stream_buffer=stream_buffer,
            supersedes=supersedes,
        )
        return self.scheduler.submit(job, *args, spec=spec)

    def new_vad(self) -> Vad:
        return EnergyVad()

    async def detect_speech(
        self, vad: Vad, frames: Sequence[np.ndarray], *, owner: str, lane: Lane = Lane.REALTIME
    ) -> list[float]:
        async def run(ctx: JobContext) -> list[float]:
            if self.vad_s:
                await asyncio.sleep(self.vad_s)
            return [vad.speech_probability(f) for f in frames]

        result: list[float] = await self._submit("vad", run, owner=owner, lane=lane).result()
        return result

    async def transcribe(
        self,
        pcm: np.ndarray,
        *,
        lane: Lane,
        owner: str,
        language: str | None = None,
        supersedes: str = "",
    ) -> Transcript:
        self.asr_audio_s.append(len(pcm) / 16_000)
        self.asr_supersedes.append(supersedes)

        async def run(ctx: JobContext) -> Transcript:
            for _ in range(10):
                await asyncio.sleep(self.asr_s / 10)
                await ctx.checkpoint()
            return Transcript(self.transcript, language or "en", len(pcm) / 16_000)

        handle = self._submit("asr", run, owner=owner, lane=lane, supersedes=supersedes)
        try:
            result: Transcript = await handle.result()
        except asyncio.CancelledError:
            handle.cancel("caller cancelled")
            raise
        return result

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
        self.chat_prompts.append(list(messages))
        self.chat_max_sentences.append(max_sentences)
        self.chat_lanes.append(lane)

        async def run(ctx: JobContext) -> str:
            if self.chat_error is not None:
                raise self.chat_error
            for word in self.reply.split(" "):
                self._llm_computing += 1
                try:
                    await asyncio.sleep(self.token_s)
                finally:
                    self._llm_computing -= 1
                await ctx.emit(word + " ")  # waits while the reader does not read
                self.emitted.append("llm")
            return self.reply

        self.chat_buffers.append(stream_buffer)
        return self._submit("llm", run, owner=owner, lane=lane, stream_buffer=stream_buffer)

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
        self.chat_prompts.append(list(messages))
        self.chat_max_sentences.append(max_sentences)
        self.chat_lanes.append(lane)
        self.tool_offers.append([t.name for t in tools])
        events: list[ChatEvent] = (
            self.tool_script.pop(0) if self.tool_script else [w + " " for w in self.reply.split()]
        )

        async def run(ctx: JobContext) -> None:
            if self.chat_error is not None:
                raise self.chat_error
            for event in events:
                await asyncio.sleep(self.token_s)
                await ctx.emit(event)
                self.emitted.append("llm")

        self.chat_buffers.append(stream_buffer)
        return self._submit("llm", run, owner=owner, lane=lane, stream_buffer=stream_buffer)

    def speak(
        self, text: str, *, lane: Lane, owner: str, sample_rate_hz: int
    ) -> JobHandle[PcmChunk]:
        async def run(ctx: JobContext) -> None:
            self.emitted.append("tts-start")
            total = int(len(text) * self.tts_ms_per_char * sample_rate_hz / 1000)
            step = self.tts_chunk_ms * sample_rate_hz // 1000
            t = np.arange(total) / sample_rate_hz
            tone = (np.sin(2 * np.pi * 440 * t) * 6000).astype(np.int16)
            for i in range(0, total, step):
                await asyncio.sleep(self.tts_chunk_s / 2)  # contention sampled twice per chunk
                slow = self.tts_contention if self._llm_computing else 1.0
                await asyncio.sleep(self.tts_chunk_s / 2 * slow)
                await ctx.emit(PcmChunk(tone[i : i + step], sample_rate_hz))
                self.emitted.append("tts")

        return self._submit("tts", run, owner=owner, lane=lane)


def tone_pcm(
    duration_s: float, *, sample_rate_hz: int = 16_000, amplitude: int = 8000
) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate_hz)) / sample_rate_hz
    return (np.sin(2 * np.pi * 300 * t) * amplitude).astype(np.int16)
