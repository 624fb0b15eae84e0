"""Text to speech: text in, streamed mono int16 PCM out at a stated sample rate."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.models.base import CancelCheck, ModelBackend


@dataclass(frozen=True, slots=True)
class PcmChunk:
    samples: np.ndarray  # int16 mono
    sample_rate_hz: int


class Tts(ModelBackend):
    @abstractmethod
    def synthesize(self, text: str, *, sample_rate_hz: int, check: CancelCheck) -> Iterator[PcmChunk]:
        """Yield PCM resampled to ``sample_rate_hz`` (16000 or 24000 for Opus)."""
