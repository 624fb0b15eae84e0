"""The reply guard between an async chat stream and a scheduler job's consumer.

A remote LLM (an HTTP stream read with ``async for``) and a Ray-hosted one (pieces handed to
a chunk callback) send their pieces to the job the same way through one
:class:`GuardedEmitter`: text goes through the :class:`core.models.chat_guard.ReplyGuard`
(when there is one) and what it lets pass is emitted; tool calls pass as they are; once the
guard ends the reply :meth:`GuardedEmitter.push` says so, and the caller stops the model.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.models.chat_guard import ReplyGuard

log = logging.getLogger(__name__)

Emit = Callable[[Any], Awaitable[None]]


class GuardedEmitter:
    """``push`` each piece of one reply, then ``finish`` (unless ``push`` said it is over)."""

    __slots__ = ("_emit", "_guard")

    def __init__(self, emit: Emit, guard: ReplyGuard | None) -> None:
        self._emit = emit
        self._guard = guard

    @property
    def stop_reason(self) -> str | None:
        return self._guard.stop_reason if self._guard is not None else None

    async def push(self, piece: Any) -> bool:
        """Emit what of ``piece`` may go out; True once the guard has ended the reply."""
        guard = self._guard
        if guard is None or not isinstance(piece, str):  # a tool call is not text to guard
            await self._emit(piece)
            return False
        out = guard.push(piece)
        if out:
            await self._emit(out)
        if guard.stop_reason is not None:
            log.debug("reply ended by the guard: %s", guard.stop_reason)
            return True
        return False

    async def finish(self) -> None:
        """The stream ended: emit what the guard still held back."""
        rest = self._guard.finish() if self._guard is not None else ""
        if rest:
            await self._emit(rest)
