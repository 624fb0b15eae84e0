"""Near copies: a reply that repeats the user's message with a character or two changed.

The parrot rule of :mod:`core.models.chat_guard` compared exactly, and a 0.5B model's copies are
often not exact: asked "行目弄得矮一点" (a misheard "屏幕弄得暗一点") the device answered
"行目弄矮一点。" (firmware emulator, 2026-12-02). Both strings here are normalized (no spaces,
no punctuation, case folded). A near copy starts with the message's first character (a reply
that starts otherwise is never held for this rule) and is within :func:`allowed_edits`
insertions, deletions or substitutions of it.
"""

from __future__ import annotations

from collections.abc import Iterator

NEAR_MIN_CHARS = 6  # shorter messages: only exact copies count (two edits of "你好呀" is anything)
LONG_CHARS = 16  # from this length two edits are allowed, else one


def allowed_edits(message: str) -> int:
    """How many edits a copy of ``message`` may have and still be a copy."""
    if len(message) < NEAR_MIN_CHARS:
        return 0
    return 1 if len(message) < LONG_CHARS else 2


def _rows(reply: str, message: str) -> Iterator[list[int]]:
    """After each character of ``reply``: the Levenshtein distances from the reply so far to
    each prefix of ``message`` (index: its length)."""
    row = list(range(len(message) + 1))
    for i, r in enumerate(reply, 1):
        prev, row[0] = row[0], i
        for j, m in enumerate(message, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != m))
        yield row


def _row(reply: str, message: str) -> list[int]:
    """The distances from all of ``reply`` to each prefix of ``message``."""
    last = list(range(len(message) + 1))  # an empty reply
    for row in _rows(reply, message):
        last = row
    return last


def may_become_copy(reply: str, message: str) -> bool:
    """``reply`` so far could still grow into a near copy of ``message``: it starts like it and
    is within the allowed edits of one of its prefixes."""
    limit = allowed_edits(message)
    if not reply or not message or reply[0] != message[0]:
        return False
    return min(_row(reply, message)) <= limit


def is_copy(reply: str, message: str) -> bool:
    """``reply`` is ``message`` or a near copy of it."""
    if reply == message:
        return True
    if not reply or not message or reply[0] != message[0]:
        return False
    return _row(reply, message)[-1] <= allowed_edits(message)


def copied_prefix(reply: str, message: str) -> int:
    """The length of the start of ``reply`` that copies ``message`` most closely (the shortest
    of equally close ones: the answer after a copy is not part of it; 0: no copy)."""
    if not reply or not message or reply[0] != message[0]:
        return 0
    limit = allowed_edits(message)
    low = max(1, len(message) - limit)
    best, best_edits = 0, limit + 1
    # one pass: row ``length`` ends in the distance from reply[:length] to the whole message
    for length, row in enumerate(_rows(reply[: len(message) + limit], message), 1):
        if length >= low and row[-1] < best_edits:
            best, best_edits = length, row[-1]
    return best
