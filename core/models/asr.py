"""Speech recognition: a whole utterance of PCM in, text and language out."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from core.models.base import ModelBackend


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    audio_s: float


class Asr(ModelBackend):
    sample_rate_hz: int = 16_000

    @abstractmethod
    def transcribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        """``pcm``: float32 mono at ``sample_rate_hz`` in -1..1. ``language`` None: detect."""
