"""A bounded single-producer/single-consumer channel for streaming job output.

Cheaper than ``asyncio.Queue`` (futures are created only when a side must wait) and closable
with an error, so a consumer sees the job's failure and a blocked producer sees cancellation.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ChannelClosed(Exception):
    """Raised to a producer that puts into a closed channel."""


class Channel(Generic[T]):
    __slots__ = (
        "_closed",
        "_error",
        "_getter",
        "_held",
        "_items",
        "_loop",
        "_maxsize",
        "_putter",
    )

    def __init__(self, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._loop = loop
        self._closed = False
        self._held = False  # the consumer asked for nothing more for now (hold())
        self._error: BaseException | None = None
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None

    async def put(self, item: T, give_up: Callable[[], bool] | None = None) -> bool:
        """Append ``item``, waiting while the buffer is full or held. While waiting,
        ``give_up()`` is asked at every wake-up (:meth:`wake_producer`): True returns False,
        item not added."""
        while (self._held or len(self._items) >= self._maxsize) and not self._closed:
            if give_up is not None and give_up():
                return False
            self._putter = self._loop.create_future()
            try:
                await self._putter
            finally:
                self._putter = None
        if self._closed:
            raise ChannelClosed
        self._items.append(item)
        _wake(self._getter)
        return True

    def hold(self, held: bool) -> None:
        """Held, the producer's next put waits as if the buffer were full, until released."""
        self._held = held
        if not held:
            _wake(self._putter)

    def wake_producer(self) -> None:
        """Wake a producer waiting for room, so that it asks its ``give_up`` again."""
        _wake(self._putter)

    def close(self, error: BaseException | None = None) -> None:
        """No more items. Buffered items are still delivered, then ``error`` (if any) is raised."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        _wake(self._getter)
        _wake(self._putter)

    async def get(self) -> T:
        """The next item; raises ``StopAsyncIteration`` (or the close error) when exhausted."""
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._getter = self._loop.create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        item = self._items.popleft()
        _wake(self._putter)
        return item


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
