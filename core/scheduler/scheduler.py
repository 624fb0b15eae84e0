"""The global scheduler: admission, lifecycle and the job table; composed of two parts.

* :class:`~core.scheduler.dispatch.Dispatcher`: the lane queues, fairness, the starvation
  bound, preemption and the counted resources; decides which job starts when.
* :class:`~core.scheduler.execution.Runners`: a fixed set of runner coroutines (no task per
  job; async jobs inline, blocking jobs on the fixed thread pool, GIL-holding jobs in the fixed
  process pool) and the table of running jobs.

The scheduler owns what both need: the job table (every job not yet forgotten, plus a history
ring), the counters and the trace, the lifecycle (:class:`SchedulerState`), and stopping jobs
(cancel, deadline). A submitted job starts at once when nothing is queued and it fits (the
common case), otherwise it is queued and a dispatch pass runs. Read-only views for the admin
API are :mod:`core.scheduler.introspect`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from core.errors import DeadlineExceeded, JobCancelled, QueueFull, SchedulerClosed, SchedulerError
from core.scheduler import introspect
from core.scheduler.context import JobContext
from core.scheduler.dispatch import Dispatcher
from core.scheduler.execution import Runners, fail_future
from core.scheduler.executors import Executors
from core.scheduler.handle import JobHandle
from core.scheduler.job import Job
from core.scheduler.queues import LaneQueue
from core.scheduler.resources import ResourcePool
from core.scheduler.settings import SchedulerSettings
from core.scheduler.stats import Counters, LoopLagMonitor, TraceBuffer
from core.scheduler.types import (
    SCHEDULED,
    SHARED_THREADS,
    SLOT_OF_MODE,
    SLOTS,
    ExecMode,
    JobSpec,
    JobStatus,
    Lane,
    SchedulerState,
    TraceEvent,
    TraceKind,
)

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "server shutting down"  # the JobCancelled message of shutdown cancellations
_SLOT = SLOT_OF_MODE


class Scheduler:
    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        budgets = dict(settings.resources)
        budgets.update(
            runner=settings.runners,
            thread=settings.thread_workers,
            process=settings.process_workers,
        )
        budgets[SHARED_THREADS] = settings.shared_threads
        self._pool = ResourcePool(budgets)
        # per lane, per mode: the needs of a job that declares nothing (shared, read-only);
        # a blocking job of a lower lane also takes a shared thread (REALTIME keeps the rest)
        self._slot_needs: list[dict[ExecMode, Mapping[str, int]]] = [
            {mode: _slot_needs(lane, mode) for mode, slot in _SLOT.items() if budgets[slot] >= 1}
            for lane in Lane
        ]
        self._jobs: dict[int, Job] = {}  # not finished, or finished but still running its code
        self._latest: dict[tuple[str, str], Job] = {}  # (owner, supersedes key) -> newest job
        self._history: deque[Job] = deque(maxlen=settings.history_capacity)
        self._ids = itertools.count(1)
        self._counters = Counters(settings.sample_capacity)
        self._trace = TraceBuffer(settings.trace_capacity)
        self._record = self._trace.record
        self._lag = LoopLagMonitor(settings.loop_lag_interval_ms)
        self._dispatcher = Dispatcher(settings, self._pool, self._record, self._on_deadline)
        self._runners = Runners(self._dispatcher, self._record, self._forget)
        self._dispatcher.bind(self._runners)
        self._state = SchedulerState.CREATED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_waiter: asyncio.Future[None] | None = None  # set while stop() drains
        self._started_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def _move(self, target: SchedulerState) -> None:
        if not self._state.can_move_to(target):
            raise SchedulerError(f"scheduler cannot move from {self._state} to {target}")
        self._state = target

    @property
    def state(self) -> SchedulerState:
        return self._state

    async def start(self) -> None:
        if self._state is not SchedulerState.CREATED:
            raise SchedulerError(f"scheduler cannot start from state {self._state.value!r}")
        s = self.settings
        self._loop = asyncio.get_running_loop()
        executors = Executors(s.thread_workers, s.process_workers)
        if s.prewarm:
            await executors.prewarm()
        await self._runners.start(s.runners + s.thread_workers + s.process_workers, executors)
        self._lag.start()
        self._started_at = time.time()
        self._move(SchedulerState.RUNNING)

    @property
    def accepting(self) -> bool:
        return self._state is SchedulerState.RUNNING

    async def stop(self, *, cancel_queued: bool = False) -> None:
        """Stop admission, let work finish for ``drain_timeout_s``, then cancel what is left.

        ``cancel_queued``: jobs that have not started are cancelled at once (reason
        :data:`SHUTDOWN_REASON`), so their submitters can say so while running jobs finish."""
        if self._state is SchedulerState.CREATED:
            self._move(SchedulerState.STOPPED)
        if self._state is not SchedulerState.RUNNING:
            return
        self._move(SchedulerState.DRAINING)
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
            log.error("%d jobs ignored cancellation at shutdown", len(self._runners.running))
        self._move(SchedulerState.STOPPED)
        self._dispatcher.close()
        await self._runners.stop(self.settings.cancel_timeout_s)
        await self._lag.stop()

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
        if self._state is not SchedulerState.RUNNING:
            raise SchedulerClosed(f"scheduler is {self._state.value}: not accepting jobs")
        loop = self._loop
        assert loop is not None
        index = spec.lane
        dispatcher = self._dispatcher
        lanes = dispatcher.lanes
        lane = lanes[index]
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
        job.ctx = JobContext(job, dispatcher, loop)
        if spec.deadline_s is not None:
            job.deadline_timer = loop.call_later(spec.deadline_s, self._on_deadline, job)
        self._jobs[job.id] = job
        if spec.supersedes:
            self._supersede(job)
        stats.submitted += 1
        self._record((job.submitted_ts, SCHEDULED, job.id, index, spec.kind, spec.owner, ""))
        if not dispatcher.pumping and not (lanes[0].live or lanes[1].live or lanes[2].live):
            # nothing queued anywhere (the common case): can_start_directly and
            # account_bypass reduce to this, ~1.5 µs per job cheaper than calling them
            if self._pool.fits(needs):
                dispatcher.start(job)
                dispatcher.bypassed[index] = 0
            else:
                lane.push(job)
                dispatcher.pump()
        elif dispatcher.can_start_directly(index, needs):
            dispatcher.start(job)
            dispatcher.account_bypass(index, job)
        else:
            queued_before = lane.owner_live.get(spec.owner, 0)
            lane.push(job)
            # FIFO per owner: behind a queued job of its own owner, this job cannot start in a
            # pass before that one does; if nothing changed since the last pass, skip it.
            if dispatcher.dirty or not queued_before:
                dispatcher.pump()
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
            needs = self._slot_needs[spec.lane].get(spec.mode)  # shared, read-only
            if needs is not None:
                return needs
        needs = {**spec.resources, **_slot_needs(spec.lane, spec.mode)}
        try:
            self._pool.validate(needs)
        except SchedulerError:
            self._reject(spec, "resources")
            raise
        return needs

    def define_resource(self, name: str, budget: int) -> None:
        """Add a counted resource after construction, e.g. ``model:llm`` = 1 (one llama.cpp
        context): the model manager declares each model's concurrency this way, so a job
        starts only when its model is free instead of waiting inside the job. At run time it
        changes a budget (Ray workers lost and back) and starts the queued jobs that now fit."""
        if name in SLOTS:
            raise SchedulerError(f"resource name {name!r} is reserved")
        self._pool.define(name, budget)
        dispatcher = self._dispatcher
        if self._state is SchedulerState.RUNNING:  # a raised budget (a worker back) starts
            dispatcher.pump()  # what now fits
        # and the next finishing job runs a full pass: the hand-off shortcut assumes budgets
        # unchanged since the last pass (a lowered one must not be handed on)
        dispatcher.dirty = True

    def position(self, handle: JobHandle[Any]) -> int:
        """Jobs that start before this one: 0 when running, -1 when finished."""
        job = handle._job
        if job.status is JobStatus.RUNNING:
            return 0
        if job.status.finished:
            return -1
        lanes = self._dispatcher.lanes
        higher = sum(lanes[lane].live for lane in range(job.spec.lane))
        return higher + lanes[job.spec.lane].position(job)

    def _reject(self, spec: JobSpec, why: str) -> None:
        self._counters.row(spec.lane, spec.kind).rejected += 1
        self._record((time.time(), TraceKind.REJECTED, 0, spec.lane, spec.kind, spec.owner, why))

    # -- the job table, cancellation and deadlines -----------------------------------------------
    def _supersede(self, job: Job) -> None:
        """``job`` replaces its owner's older job of the same ``supersedes`` key."""
        key = (job.spec.owner, job.spec.supersedes)
        older = self._latest.get(key)
        self._latest[key] = job
        if older is not None:
            self._cancel(older, f"superseded by job {job.id}")

    def _forget(self, job: Job) -> None:
        """The job is done with (finished and its code returned, or never started)."""
        if job.deadline_timer is not None:
            job.deadline_timer.cancel()
            job.deadline_timer = None
        if job.spec.supersedes:
            key = (job.spec.owner, job.spec.supersedes)
            if self._latest.get(key) is job:
                del self._latest[key]
        jobs = self._jobs
        if jobs.pop(job.id, None) is not None:
            self._history.append(job)
        if not jobs and self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _cancel(self, job: Job, reason: str) -> bool:
        return self._stop_job(job, JobCancelled(reason), JobStatus.CANCELLED)

    def _on_deadline(self, job: Job) -> None:
        job.deadline_timer = None
        spec = job.spec
        self._stop_job(
            job,
            DeadlineExceeded(f"job {job.id} ({spec.kind}) passed its {spec.deadline_s}s deadline"),
            JobStatus.EXPIRED,
        )

    def _stop_job(self, job: Job, error: SchedulerError, status: JobStatus) -> bool:
        """Answer the submitter with ``error`` now; a queued job leaves, a running one stops
        at its next checkpoint (async jobs: at once)."""
        if job.status.finished:
            return False
        spec, ctx = job.spec, job.ctx
        assert ctx is not None
        previous = job.status
        if previous in (JobStatus.QUEUED, JobStatus.YIELDED):
            self._dispatcher.discard(job)  # a paused job's checkpoint wakes up and raises
        job.status = status
        job.error = str(error)
        ctx.cancel_error = error
        fail_future(job.future, error)
        job.close_channel(error)
        if status is JobStatus.CANCELLED:
            job.stats.cancelled += 1
            trace = TraceKind.CANCELLED
        else:
            job.stats.expired += 1
            trace = TraceKind.EXPIRED
        self._record((time.time(), trace, job.id, spec.lane, spec.kind, spec.owner, job.error))
        if previous is JobStatus.QUEUED:
            job.finished_at = time.monotonic()
            self._forget(job)
            return True
        if spec.mode is ExecMode.ASYNC:
            self._runners.kill(job)
        return True

    # -- read-only views (admin API, metrics, the bot's status command) --------------------------
    @property
    def loop_lag(self) -> LoopLagMonitor:
        return self._lag

    def stats(self) -> dict[str, Any]:
        """Counts, latency percentiles, queues, running jobs, resources and loop lag (JSON-able)."""
        return introspect.stats(self)

    def jobs(
        self,
        *,
        status: str | None = None,
        lane: str | None = None,
        kind: str | None = None,
        owner: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[dict[str, object]]:
        return introspect.select(
            self, status=status, lane=lane, kind=kind, owner=owner, offset=offset, limit=limit
        )

    def job(self, job_id: int) -> dict[str, object] | None:
        job = self._find(job_id)
        return None if job is None else job.to_dict(time.monotonic())

    def cancel(self, job_id: int, reason: str = "cancelled by admin") -> bool:
        """Cancel by id (admin API, bot /cancel). False when unknown or already finished."""
        job = self._find(job_id)
        return False if job is None else self._cancel(job, reason)

    def _find(self, job_id: int) -> Job | None:
        job = self._jobs.get(job_id)
        if job is not None:
            return job
        return next((j for j in self._history if j.id == job_id), None)

    def trace(self, limit: int | None = None) -> list[TraceEvent]:
        return self._trace.events(limit)

    def trace_jsonl(self, limit: int | None = None) -> str:
        return self._trace.jsonl(limit)


def _slot_needs(lane: Lane, mode: ExecMode) -> dict[str, int]:
    """The implicit slots a job of ``lane`` running in ``mode`` takes."""
    if mode is ExecMode.THREAD and lane is not Lane.REALTIME:
        return {"thread": 1, SHARED_THREADS: 1}
    return {_SLOT[mode]: 1}


def _given_back(spec: JobSpec) -> Mapping[str, int]:
    """The declared resources a preempted job gives back: all but ``keep_on_yield``."""
    keep = spec.keep_on_yield
    if not keep:
        return spec.resources
    return {name: amount for name, amount in spec.resources.items() if name not in keep}
