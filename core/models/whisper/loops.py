"""Whisper repetition loops: find and collapse a transcript that repeats itself.

Whisper sometimes decodes the same words again and again ("Set a timer. Set a timer. Set a
timer."). Its own check, a gzip compression ratio above 2.4, misses a short sentence repeated
two or three times (the ratio of such a text stays near 2), so this looks for the loop itself.

Units are words (runs of non-space characters) and, in Chinese, single hanzi; punctuation and
case are ignored when comparing. A block of ``p`` units immediately repeated is a loop when it
is long enough to be no accident of speech: at least :data:`MIN_BLOCK_UNITS` units repeated at
least twice ("Set a timer for" twice), or any block repeated :data:`MIN_SHORT_REPEATS` times
covering :data:`MIN_SHORT_UNITS` units ("A timer. A timer. A timer.", "the the the the the
the"). Speech such as "very very", "对对对", "谢谢谢谢" or "一点一点" is left alone.
:func:`collapse_loops` keeps the first copy (and drops a cut-off partial copy after the last).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.models.hanzi import HAN_CLASS

MIN_BLOCK_UNITS = 4
MIN_SHORT_REPEATS = 3
MIN_SHORT_UNITS = 6
MAX_UNITS = 1000  # longer texts are left as they are (whisper caps a window at 448 tokens)

_HAN = HAN_CLASS
_TOKEN = re.compile(f"[{_HAN}]|[^\\s{_HAN}]+")


@dataclass(frozen=True, slots=True)
class _Unit:
    key: str  # lower-cased letters and digits only
    start: int
    end: int


def _units(text: str) -> list[_Unit]:
    units = []
    for match in _TOKEN.finditer(text):
        key = "".join(ch for ch in match.group().lower() if ch.isalnum())
        if key:
            units.append(_Unit(key, match.start(), match.end()))
    return units


def _is_loop(block_units: int, repeats: int) -> bool:
    if repeats < 2:
        return False
    if block_units >= MIN_BLOCK_UNITS:
        return True
    return repeats >= MIN_SHORT_REPEATS and block_units * repeats >= MIN_SHORT_UNITS


def _loop_at(keys: list[str], i: int) -> tuple[int, int, int] | None:
    """(block units, full repeats, units of a trailing partial copy) of a loop starting at i."""
    n = len(keys)
    for p in range(1, (n - i) // 2 + 1):
        block = keys[i : i + p]
        repeats = 1
        while keys[i + repeats * p : i + (repeats + 1) * p] == block:
            repeats += 1
        if _is_loop(p, repeats):
            after = i + repeats * p
            partial = 0
            while partial < p and after + partial < n and keys[after + partial] == block[partial]:
                partial += 1
            partial = partial if after + partial == n else 0  # only a copy cut off at the end
            return p, repeats, partial
    return None


def has_loop(text: str) -> bool:
    """Whether ``text`` contains a repetition loop (see the module docstring)."""
    units = _units(text)
    if len(units) > MAX_UNITS:
        return False
    keys = [u.key for u in units]
    return any(_loop_at(keys, i) is not None for i in range(len(keys)))


def collapse_loops(text: str) -> str:
    """``text`` with every repetition loop reduced to its first copy."""
    units = _units(text)
    if len(units) > MAX_UNITS:
        return text
    keys = [u.key for u in units]
    pieces: list[str] = []
    kept_from = 0  # text offset not yet copied
    i = 0
    while i < len(keys):
        loop = _loop_at(keys, i)
        if loop is None:
            i += 1
            continue
        p, repeats, partial = loop
        last = i + repeats * p + partial - 1
        # the first copy with the punctuation right after it; the loop's own punctuation goes
        pieces.append(text[kept_from : _past_punctuation(text, units[i + p - 1].end)])
        kept_from = _past_punctuation(text, units[last].end)
        i = last + 1
    pieces.append(text[kept_from:])
    return "".join(pieces).strip()


def _past_punctuation(text: str, offset: int) -> int:
    while offset < len(text) and not text[offset].isspace() and not text[offset].isalnum():
        offset += 1
    return offset
