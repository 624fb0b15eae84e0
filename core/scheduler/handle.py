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
    __slots__ = ("_channel", "_job", "_scheduler")

    def __init__(self, job: Job, scheduler: Scheduler, channel: Channel[Any]) -> None:
        self._job = job
        self._scheduler = scheduler
        self._channel = channel

    @property
    def id(self) -> int:
        return self._job.id

    @property
    def status(self) -> JobStatus:
        return self._job.status

    def done(self) -> bool:
        return self._job.future.done()

    async def result(self) -> Any:
        """The job's return value; raises its exception, JobCancelled or DeadlineExceeded."""
        return await asyncio.shield(self._job.future)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    def stream(self) -> AsyncIterator[T]:
        """Chunks the job emits, in order; ends with the job, raising its error if it failed."""
        return _Stream(self._channel)

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
