"""Voice activity detection: one frame of 16-bit PCM in, a speech probability out.

Many devices stream at once and Silero keeps recurrent state per audio stream, so a VAD comes
in two parts:

- :class:`VadModel` — the loaded, shared model (one onnxruntime session for Silero). This is
  what the model manager loads, unloads and counts against the budget.
- :class:`Vad` — a cheap per-stream detector from ``model.new_stream()``; it owns the stream's
  recurrent state and is used by one audio stream only (not thread-safe, no locking needed).

    model = create_vad(VadSettings())        # provider module is imported here, not before
    model.load()
    vad = model.new_stream()                 # one per device session
    p = vad.speech_probability(frame)        # frame: int16, vad.frame_samples long
    vad.reset()                              # between utterances

Turning probabilities into speech start/end events is :mod:`devices.endpointer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from core.models.base import CancelCheck, ModelBackend


class VadSettings(BaseModel):
    provider: Literal["silero", "webrtc"] = "silero"
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="speech when probability >= this")
    release_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="speech ends below this (None: threshold - 0.15)"
    )
    min_speech_ms: int = Field(250, ge=0, description="speech this long before 'start' is reported")
    min_silence_ms: int = Field(700, ge=0, description="hangover: silence this long ends speech")
    webrtc_aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad mode 0 (lax)..3")
    cpu_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads (Silero)")
    device: str = Field("cpu", pattern=r"^cpu$", description="both providers run on the CPU")
    footprint_mb: int = Field(50, ge=0, description="declared memory need (Silero: ~47 MB RSS)")
    idle_unload_s: float | None = Field(
        0.0, ge=0, description="0: never unload (tiny, needed by every device); None: the default"
    )


class Vad(ABC):
    """A per-stream detector. Not a ModelBackend: the shared :class:`VadModel` is loaded once
    and streams are created from it for free (a stream has nothing to load)."""

    sample_rate_hz: int = 16_000
    frame_samples: int = 512  # samples per call; providers set their own (webrtc: 480, silero: 512)

    @abstractmethod
    def speech_probability(self, frame: np.ndarray) -> float:
        """``frame``: int16 mono, exactly ``frame_samples`` long. Returns 0.0 .. 1.0."""

    def reset(self) -> None:  # noqa: B027 - optional hook: stateless providers keep it empty
        """Forget recurrent state between utterances (stateless providers: nothing)."""

    @property
    def frame_ms(self) -> float:
        return 1000.0 * self.frame_samples / self.sample_rate_hz


class VadModel(ModelBackend):
    """The loaded VAD, shared by every stream; thread-safe ``new_stream``."""

    sample_rate_hz: int = 16_000
    frame_samples: int = 512

    @abstractmethod
    def new_stream(self) -> Vad:
        """A fresh detector with its own state; raises ModelLoadError if not loaded."""

    def warm_up(self, check: CancelCheck) -> None:
        """Score one silent frame (onnxruntime's first run sets up its buffers)."""
        check()
        stream = self.new_stream()
        stream.speech_probability(np.zeros(stream.frame_samples, dtype=np.int16))


def create_vad(settings: VadSettings) -> VadModel:
    """The configured VAD model, not yet loaded (call ``load()``)."""
    if settings.provider == "silero":
        from core.models.silero.vad import SileroVadModel

        return SileroVadModel(settings)
    from core.models.webrtcvad.vad import WebrtcVadModel

    return WebrtcVadModel(settings)
