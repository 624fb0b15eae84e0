"""The scheduler's internal record of one job (a dataclass on the hot path)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.scheduler.channel import Channel
from core.scheduler.stats import KindStats
from core.scheduler.types import JobSpec, JobStatus

if TYPE_CHECKING:
    from core.scheduler.context import JobContext


@dataclass(slots=True, eq=False)
class Job:
    id: int
    spec: JobSpec
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    needs: Mapping[str, int]  # declared resources plus the implicit slot
    slot: str  # implicit slot: "runner" (async), "thread" or "process"
    declared: Mapping[str, int]  # declared resources a preempted job gives back (not kept)
    future: asyncio.Future[Any]
    submitted_at: float  # time.monotonic()
    submitted_ts: float  # time.time(), for display
    deadline_at: float | None
    stats: KindStats  # the counters of its (lane, kind)
    ctx: JobContext | None = None
    status: JobStatus = JobStatus.QUEUED
    started_at: float | None = None
    finished_at: float | None = None
    deadline_timer: asyncio.TimerHandle | None = None
    runner: Any = None  # the Runner executing it (async jobs), for hard cancellation
    kill_requested: bool = False  # the runner task was cancelled on this job's behalf
    holding: bool = False  # declared resources are currently held
    yield_requested: bool = False
    resume: asyncio.Future[None] | None = None
    yields: int = 0
    grace: int = 0  # checkpoints a resumed job still runs after a new yield request
    yield_for_realtime: bool = False  # a REALTIME job asked it to yield: no grace steps
    preempting: bool = False  # a queued REALTIME job that asked a running job to yield
    slice_at: float = 0.0  # time.monotonic() of its last start or resume (owner_slice_s)
    sliced: bool = False  # paused for another owner of its lane: resumes after their heads
    error: str = ""
    stream_size: int = 32
    channel: Channel[Any] | None = None  # created on first emit or stream()

    def pauses_at_this_step(self) -> bool:
        """Asked to yield, it pauses at this checkpoint (no grace steps left, or a REALTIME
        job asked)."""
        return self.yield_requested and (self.grace == 0 or self.yield_for_realtime)

    def kept(self) -> dict[str, int]:
        """What a preempted job still holds while paused: its slot and ``keep_on_yield``."""
        declared = self.declared
        return {name: amount for name, amount in self.needs.items() if name not in declared}

    def channel_for(self, loop: asyncio.AbstractEventLoop) -> Channel[Any]:
        """The job's stream, created on first use (most jobs never stream)."""
        channel = self.channel
        if channel is None:
            channel = self.channel = Channel(self.stream_size, loop)
            future = self.future
            if future.done():
                channel.close(None if future.cancelled() else future.exception())
        return channel

    def close_channel(self, error: BaseException | None = None) -> None:
        if self.channel is not None:
            self.channel.close(error)

    def to_dict(self, now: float) -> dict[str, object]:
        """A JSON-friendly view for the admin API; ``now`` is time.monotonic()."""
        start = self.started_at
        end = self.finished_at
        wait_s = (
            start if start is not None else (end if end is not None else now)
        ) - self.submitted_at
        run_s = None if start is None else (end if end is not None else now) - start
        return {
            "id": self.id,
            "kind": self.spec.kind,
            "lane": self.spec.lane.name.lower(),
            "owner": self.spec.owner,
            "mode": self.spec.mode.value,
            "label": self.spec.label,
            "status": self.status.value,
            "resources": dict(self.spec.resources),
            "preemptible": self.spec.preemptible,
            "submitted_ts": self.submitted_ts,
            "wait_s": round(wait_s, 6),
            "run_s": None if run_s is None else round(run_s, 6),
            "yields": self.yields,
            "error": self.error,
        }
