"""What the device pipeline needs from the inference facade (``core.models.inference.Inference``).

A structural protocol so the pipeline is typed against exactly the calls it makes and tests can
pass a double with the same methods. Every call is a scheduler job in the caller's lane.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from core.models.asr import Transcript
from core.models.llm import ChatMessage, ToolSpec
from core.models.tts import PcmChunk
from core.models.vad import Vad
from core.scheduler import JobHandle, Lane
from devices.protocol import ServerMessage

Gate = Callable[[], bool]  # checked under the send lock: False drops the message (stale turn)


class VoiceInference(Protocol):
    def new_vad(self) -> Vad: ...

    async def detect_speech(
        self, vad: Vad, frames: Sequence[np.ndarray], *, owner: str, lane: Lane = Lane.REALTIME
    ) -> list[float]: ...

    async def transcribe(
        self,
        pcm: np.ndarray,
        *,
        lane: Lane,
        owner: str,
        language: str | None = None,
        supersedes: str = "",
    ) -> Transcript:
        """``supersedes``: a key; this job cancels the owner's older job with the same key."""

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
    ) -> JobHandle[Any]: ...

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
    ) -> JobHandle[Any]: ...

    def speak(
        self, text: str, *, lane: Lane, owner: str, sample_rate_hz: int
    ) -> JobHandle[Any]: ...


class Outbox(Protocol):
    """The sending half of a device connection (one writer, in order)."""

    session_id: str

    async def send_message(self, message: ServerMessage, *, gate: Gate | None = None) -> bool: ...

    async def send_audio(self, packet: bytes, *, gate: Gate | None = None) -> bool: ...


__all__ = ["ChatMessage", "Gate", "Outbox", "PcmChunk", "Transcript", "VoiceInference"]
