"""The global scheduler: admission, dispatch, execution and lifecycle of every model job.

This file holds lifecycle and admission; dispatch (priority, fairness, backfill, starvation
bound, preemption) is :mod:`core.scheduler.dispatch`, running and stopping jobs is
:mod:`core.scheduler.execution`, read-only views are :mod:`core.scheduler.introspect`.
A submitted job starts at once when nothing is queued and it fits (the common case),
otherwise it is queued and a dispatch pass runs.

Jobs run on a fixed set of runner coroutines (no task per job): async jobs inline, blocking
jobs on the fixed thread pool, GIL-holding jobs in the fixed process pool.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from core.errors import QueueFull, SchedulerClosed, SchedulerError
from core.scheduler.context import JobContext
from core.scheduler.dispatch import Dispatch
from core.scheduler.execution import Execution
from core.scheduler.executors import Executors
from core.scheduler.handle import JobHandle
from core.scheduler.introspect import Introspection
from core.scheduler.job import Job
from core.scheduler.queues import LaneQueue
from core.scheduler.resources import ResourcePool
from core.scheduler.settings import SchedulerSettings
from core.scheduler.stats import Counters, LoopLagMonitor, TraceBuffer
from core.scheduler.types import SCHEDULED, ExecMode, JobSpec, JobStatus, Lane, TraceKind

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "server shutting down"  # the JobCancelled message of shutdown cancellations
_SLOT = {ExecMode.ASYNC: "runner", ExecMode.THREAD: "thread", ExecMode.PROCESS: "process"}


class _Runner:
    __slots__ = ("current", "job", "name", "task", "waiter")

    def __init__(self, name: str) -> None:
        self.name = name
        self.job: Job | None = None  # assigned, not yet started
        self.current: Job | None = None  # executing now
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class Scheduler(Dispatch, Execution, Introspection):
    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        budgets = dict(settings.resources)
        budgets.update(
            runner=settings.runners,
            thread=settings.thread_workers,
            process=settings.process_workers,
        )
        self._pool = ResourcePool(budgets)
        self._slot_needs: dict[ExecMode, Mapping[str, int]] = {
            mode: {slot: 1} for mode, slot in _SLOT.items() if budgets[slot] >= 1
        }
        self._lanes = [LaneQueue() for _ in Lane]
        self._bypassed = [0 for _ in Lane]
        self._jobs: dict[int, Job] = {}  # not finished, or finished but still running its code
        self._running: dict[int, Job] = {}
        self._preemptible: dict[int, Job] = {}  # running preemptible jobs (preemption victims)
        self._history: deque[Job] = deque(maxlen=settings.history_capacity)
        self._ids = itertools.count(1)
        self._counters = Counters(settings.sample_capacity)
        self._trace = TraceBuffer(settings.trace_capacity)
        self._record = self._trace.record
        self._lag = LoopLagMonitor(settings.loop_lag_interval_ms)
        self._runners: list[_Runner] = []
        self._idle: list[_Runner] = []
        self._state = "new"
        self._pumping = False
        self._repump = False
        self._dirty = True  # something may have become startable since the last pass
        self._executors: Executors | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_waiter: asyncio.Future[None] | None = None  # set while stop() drains
        self._started_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._state != "new":
            raise SchedulerError(f"scheduler cannot start from state {self._state!r}")
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._executors = Executors(s.thread_workers, s.process_workers)
        if s.prewarm:
            await self._executors.prewarm()
        for i in range(s.runners + s.thread_workers + s.process_workers):
            runner = _Runner(f"scheduler-runner-{i}")
            runner.task = self._loop.create_task(self._runner_main(runner), name=runner.name)
            self._runners.append(runner)
            self._idle.append(runner)
        self._lag.start()
        self._started_at = time.time()
        self._state = "running"

    @property
    def accepting(self) -> bool:
        return self._state == "running"

    async def stop(self, *, cancel_queued: bool = False) -> None:
        """Stop admission, let work finish for ``drain_timeout_s``, then cancel what is left.

        ``cancel_queued``: jobs that have not started are cancelled at once (reason
        :data:`SHUTDOWN_REASON`), so their submitters can say so while running jobs finish."""
        if self._state == "new":
            self._state = "stopped"
        if self._state != "running":
            return
        self._state = "draining"
        if cancel_queued:
            queued = [job for job in self._jobs.values() if job.status is JobStatus.QUEUED]
            for job in queued:
                self._cancel(job, SHUTDOWN_REASON)
            if queued:
                log.info("shutdown: cancelled %d queued jobs", len(queued))
        if not await self._wait_drained(self.settings.drain_timeout_s):
            log.warning(
                "scheduler drain timed out with %d jobs left; cancelling them", len(self._jobs)
            )
        for job in list(self._jobs.values()):
            self._cancel(job, "scheduler shutting down")
        if not await self._wait_drained(self.settings.cancel_timeout_s):
            log.error("%d jobs ignored cancellation at shutdown", len(self._running))
        self._state = "stopped"
        for runner in self._runners:
            if runner.task is not None:
                runner.task.cancel()
        tasks = [r.task for r in self._runners if r.task is not None]
        await asyncio.wait(tasks, timeout=self.settings.cancel_timeout_s or None)
        await self._lag.stop()
        if self._executors is not None:
            self._executors.shutdown()

    async def _wait_drained(self, timeout_s: float) -> bool:
        """Wait until no job is left (True) or ``timeout_s`` passes (False)."""
        if not self._jobs:
            return True
        assert self._loop is not None
        waiter = self._drain_waiter = self._loop.create_future()
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return False
        finally:
            self._drain_waiter = None
        return True

    # -- submission -----------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any, spec: JobSpec) -> JobHandle[Any]:
        """Queue ``fn``; raises QueueFull, SchedulerClosed or ResourceUnsatisfiable."""
        if self._state != "running":
            raise SchedulerClosed(f"scheduler is {self._state}: not accepting jobs")
        loop = self._loop
        assert loop is not None
        index = spec.lane
        lane = self._lanes[index]
        if lane.live:
            self._check_room(lane, spec)
        needs = self._needs(spec)
        stats = self._counters.row(index, spec.kind)
        now = time.monotonic()  # job timestamps; the default asyncio loop's clock too
        job = Job(  # positional: 12 keywords cost ~0.5 µs more per job; order as in Job
            next(self._ids),  # id
            spec,
            fn,
            args,
            needs,
            _SLOT[spec.mode],  # slot
            _given_back(spec),  # declared
            asyncio.Future(loop=loop),  # future (loop.create_future() adds a Python frame)
            now,  # submitted_at
            time.time(),  # submitted_ts
            None if spec.deadline_s is None else now + spec.deadline_s,  # deadline_at
            stats,
        )
        job.stream_size = spec.stream_buffer or self.settings.stream_buffer
        job.ctx = JobContext(job, self, loop)
        if spec.deadline_s is not None:
            job.deadline_timer = loop.call_later(spec.deadline_s, self._on_deadline, job)
        self._jobs[job.id] = job
        stats.submitted += 1
        self._record((job.submitted_ts, SCHEDULED, job.id, index, spec.kind, spec.owner, ""))
        lanes = self._lanes
        if not self._pumping and not (lanes[0].live or lanes[1].live or lanes[2].live):
            # nothing queued anywhere (the common case): _can_start_directly and
            # _account_bypass reduce to this, ~1.5 µs per job cheaper than calling them
            if self._pool.fits(needs):
                self._start(job)
                self._bypassed[index] = 0
            else:
                lane.push(job)
                self._pump()
        elif self._can_start_directly(index, needs):
            self._start(job)
            self._account_bypass(index, job)
        else:
            queued_before = lane.owner_live.get(spec.owner, 0)
            lane.push(job)
            # FIFO per owner: behind a queued job of its own owner, this job cannot start in a
            # pass before that one does; if nothing changed since the last pass, skip it.
            if self._dirty or not queued_before:
                self._pump()
        return JobHandle(job, self, loop)

    def _check_room(self, lane: LaneQueue, spec: JobSpec) -> None:
        s = self.settings
        if lane.live >= s.lane_queue_limit:
            self._reject(spec, "lane")
            raise QueueFull(
                f"the {spec.lane.name.lower()} queue is full ({s.lane_queue_limit} jobs)",
                limit=s.lane_queue_limit,
                scope=f"lane:{spec.lane.name.lower()}",
            )
        if lane.owner_live.get(spec.owner, 0) >= s.owner_queue_limit:
            self._reject(spec, "owner")
            raise QueueFull(
                f"{spec.owner} already has {s.owner_queue_limit} jobs queued",
                limit=s.owner_queue_limit,
                scope=f"owner:{spec.owner}",
            )

    def _needs(self, spec: JobSpec) -> Mapping[str, int]:
        """Declared resources plus the implicit slot, validated against the budgets."""
        if not spec.resources:
            needs = self._slot_needs.get(spec.mode)  # shared, read-only: only valid slots
            if needs is not None:
                return needs
        needs = {**spec.resources, _SLOT[spec.mode]: 1}
        try:
            self._pool.validate(needs)
        except SchedulerError:
            self._reject(spec, "resources")
            raise
        return needs

    def define_resource(self, name: str, budget: int) -> None:
        """Add a counted resource after construction, e.g. ``model:llm`` = 1 (one llama.cpp
        context): the model manager declares each model's concurrency this way, so a job
        starts only when its model is free instead of waiting inside the job."""
        if name in _SLOT.values():
            raise SchedulerError(f"resource name {name!r} is reserved")
        self._pool.define(name, budget)
        self._dirty = True

    def position(self, handle: JobHandle[Any]) -> int:
        """Jobs that start before this one: 0 when running, -1 when finished."""
        job = handle._job
        if job.status is JobStatus.RUNNING:
            return 0
        if job.status.finished:
            return -1
        higher = sum(self._lanes[lane].live for lane in range(job.spec.lane))
        return higher + self._lanes[job.spec.lane].position(job)

    def _reject(self, spec: JobSpec, why: str) -> None:
        self._counters.row(spec.lane, spec.kind).rejected += 1
        self._record((time.time(), TraceKind.REJECTED, 0, spec.lane, spec.kind, spec.owner, why))


def _given_back(spec: JobSpec) -> Mapping[str, int]:
    """The declared resources a preempted job gives back: all but ``keep_on_yield``."""
    keep = spec.keep_on_yield
    if not keep:
        return spec.resources
    return {name: amount for name, amount in spec.resources.items() if name not in keep}
