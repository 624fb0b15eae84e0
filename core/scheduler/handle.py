"""What a submitter holds: await the result, iterate the stream, cancel, ask the position."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from core.scheduler.channel import Channel
from core.scheduler.types import JobStatus

if TYPE_CHECKING:
    from core.scheduler.job import Job
    from core.scheduler.scheduler import Scheduler

T = TypeVar("T")


class JobHandle(Generic[T]):
    __slots__ = ("_job", "_loop", "_scheduler")

    def __init__(self, job: Job, scheduler: Scheduler, loop: asyncio.AbstractEventLoop) -> None:
        self._job = job
        self._scheduler = scheduler
        self._loop = loop

    @property
    def id(self) -> int:
        return self._job.id

    @property
    def status(self) -> JobStatus:
        return self._job.status

    def done(self) -> bool:
        return self._job.future.done()

    async def result(self) -> Any:
        """The job's return value; raises its exception, JobCancelled or DeadlineExceeded.

        Cancelling the awaiting task cancels the job: nobody is left to take its result."""
        return await self

    def __await__(self) -> Generator[Any, None, Any]:
        """``await handle`` is :meth:`result` without a coroutine frame (the hot path)."""
        future = self._job.future
        try:
            return (yield from future.__await__())
        except asyncio.CancelledError:
            if future.cancelled():
                self._scheduler._cancel(self._job, "the submitter stopped waiting")
            raise

    def stream(self) -> AsyncIterator[T]:
        """Chunks the job emits, in order; ends with the job, raising its error if it failed."""
        return _Stream(self._job.channel_for(self._loop))

    def hold_stream(self, held: bool = True) -> None:
        """Held, a streaming job waits at its next emit, as if the consumer's buffer were full
        (it still pauses or is cancelled there as usual), until ``hold_stream(False)``."""
        self._job.channel_for(self._loop).hold(held)

    def cancel(self, reason: str = "cancelled by submitter") -> bool:
        """Queued: leaves at once. Running: stops at its next emit/checkpoint. False if finished."""
        return self._scheduler._cancel(self._job, reason)

    def position(self) -> int:
        return self._scheduler.position(self)


class _Stream(Generic[T]):
    __slots__ = ("_channel",)

    def __init__(self, channel: Channel[T]) -> None:
        self._channel = channel

    def __aiter__(self) -> _Stream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._channel.get()
