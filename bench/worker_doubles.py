"""A stand-in backend for bench/workers_bench.py: chunks of PCM-sized arrays with no compute.

Module-level so a worker process unpickles the factory by reference.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel

from core.models.base import CancelCheck, ModelBackend


class ChunksSettings(BaseModel):
    samples: int = 4_800  # 0.2 s of 24 kHz int16 audio: one TTS chunk


class Chunks(ModelBackend):
    def __init__(self, settings: ChunksSettings) -> None:
        self._chunk = np.zeros(settings.samples, dtype=np.int16)

    def load(self) -> None:
        return None

    def pcm(self, n: int, *, check: CancelCheck) -> Iterator[np.ndarray]:
        """``n`` PCM chunks (a TTS stand-in): one chunk and one step each."""
        for _ in range(n):
            yield self._chunk

    def tokens(self, n: int, *, check: CancelCheck) -> Iterator[str]:
        """``n`` short text pieces (a token stand-in)."""
        for _ in range(n):
            yield "字"


def create_chunks(settings: ChunksSettings) -> Chunks:
    return Chunks(settings)
