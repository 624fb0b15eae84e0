"""Voice activity detection: one frame of 16-bit PCM in, a speech probability out."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from core.models.base import ModelBackend


class Vad(ModelBackend):
    sample_rate_hz: int = 16_000
    frame_samples: int = 512  # samples per call; providers set their own (webrtc: 480, silero: 512)

    @abstractmethod
    def speech_probability(self, frame: np.ndarray) -> float:
        """``frame``: int16 mono, exactly ``frame_samples`` long. Returns 0.0 .. 1.0."""

    def reset(self) -> None:
        """Forget recurrent state between utterances (stateless providers: nothing)."""
