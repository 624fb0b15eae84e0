"""The global scheduler: admission, dispatch, execution and lifecycle of every model job.

Dispatch is synchronous (:meth:`Scheduler._pump`), run whenever something changes: a submit,
a finish, a cancel, a preemption. It walks the lanes in priority order; within a lane it
looks at the head job of each owner in round-robin order. A job starts only when all its
resources fit after subtracting what blocked higher-priority jobs are waiting for (so lower
lanes can backfill without delaying them). A lane passed over ``starvation_bound`` times
while non-empty is looked at first once. A blocked job asks running preemptible jobs of
lower lanes holding what it lacks to yield at their next step.

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
from core.scheduler.execution import Execution
from core.scheduler.executors import Executors
from core.scheduler.handle import JobHandle
from core.scheduler.introspect import Introspection
from core.scheduler.job import Job
from core.scheduler.queues import LaneQueue
from core.scheduler.resources import ResourcePool
from core.scheduler.settings import SchedulerSettings
from core.scheduler.stats import Counters, LoopLagMonitor, TraceBuffer
from core.scheduler.types import ExecMode, JobSpec, JobStatus, Lane, TraceKind

log = logging.getLogger(__name__)

SCAN_LIMIT = 16  # head jobs examined per lane and pass: bounds dispatch cost with huge queues
BLOCKED_LIMIT = 4  # blocked heads per lane and pass before the pass leaves the lane
_SLOT = {ExecMode.ASYNC: "runner", ExecMode.THREAD: "thread", ExecMode.PROCESS: "process"}
_ORDER = tuple(int(lane) for lane in Lane)
_NONE: frozenset[int] = frozenset()
_RUNNING, _SCHEDULED, _STARTED = JobStatus.RUNNING, TraceKind.SCHEDULED, TraceKind.STARTED
_clock = time.monotonic  # job timestamps; the default asyncio loop's clock too
_Future = asyncio.Future


class _Runner:
    __slots__ = ("current", "job", "name", "task", "waiter")

    def __init__(self, name: str) -> None:
        self.name = name
        self.job: Job | None = None  # assigned, not yet started
        self.current: Job | None = None  # executing now
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class Scheduler(Execution, Introspection):
    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        budgets = dict(settings.resources)
        budgets.update(
            runner=settings.runners,
            thread=settings.thread_workers,
            process=settings.process_workers,
        )
        self._pool = ResourcePool(budgets)
        self._stream_size = settings.stream_buffer
        self._slot_needs: dict[ExecMode, Mapping[str, int]] = {
            mode: {slot: 1} for mode, slot in _SLOT.items() if budgets[slot] >= 1
        }
        self._lanes = [LaneQueue() for _ in _ORDER]
        self._bypassed = [0 for _ in _ORDER]
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

    async def stop(self) -> None:
        """Stop admission, let work finish for ``drain_timeout_s``, then cancel what is left."""
        if self._state == "new":
            self._state = "stopped"
        if self._state != "running":
            return
        self._state = "draining"
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
        lanes = self._lanes
        lane = lanes[index]
        if lane.live:
            self._check_room(lane, spec)
        needs = self._needs(spec)
        stats = self._counters.row(index, spec.kind)
        now = _clock()
        job = Job(
            next(self._ids),
            spec,
            fn,
            args,
            needs,
            _SLOT[spec.mode],
            spec.resources,
            _Future(loop=loop),
            now,
            time.time(),
            None if spec.deadline_s is None else now + spec.deadline_s,
            stats,
        )
        job.stream_size = spec.stream_buffer or self._stream_size
        job.ctx = JobContext(job, self, loop)
        if spec.deadline_s is not None:
            job.deadline_timer = loop.call_later(spec.deadline_s, self._on_deadline, job)
        self._jobs[job.id] = job
        stats.submitted += 1
        self._record((job.submitted_ts, _SCHEDULED, job.id, index, spec.kind, spec.owner, ""))
        if not self._pumping and not (lanes[0].live or lanes[1].live or lanes[2].live):
            # nothing queued anywhere (the common case): start now if it fits
            if self._pool.fits(needs):
                self._start(job)
                self._bypassed[index] = 0
            else:
                lane.push(job)
                self._pump()
        elif self._can_start_directly(index, needs):
            self._start(job)
            self._account_bypass(index)
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

    def _can_start_directly(self, index: int, needs: Mapping[str, int]) -> bool:
        """Nothing queued at this lane or above, no starved lane below, and the job fits."""
        if self._pumping:
            return False
        lanes, bypassed, bound = self._lanes, self._bypassed, self.settings.starvation_bound
        for k in range(len(lanes)):
            live = lanes[k].live
            if live and (k <= index or bypassed[k] >= bound):
                return False
        return self._pool.fits(needs)

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

    # -- dispatch -------------------------------------------------------------------------------
    def _pump(self) -> None:
        if self._pumping:
            self._repump = True  # something changed during a pass: look once more afterwards
            return
        self._pumping = True
        try:
            self._repump = True
            while self._repump:
                self._repump = False
                self._dispatch_pass()
        finally:
            self._pumping = False

    def _dispatch_pass(self) -> None:
        """Start everything that may start now. Resources only shrink during a pass, so once
        a lane has nothing more that fits, later lanes cannot change that: one pass suffices."""
        self._dirty = False
        lanes, bound, bypassed = self._lanes, self.settings.starvation_bound, self._bypassed
        if not (lanes[0].live or lanes[1].live or lanes[2].live):
            return
        if (bypassed[1] >= bound and lanes[1].live) or (bypassed[2] >= bound and lanes[2].live):
            starved = [i for i in (1, 2) if bypassed[i] >= bound and lanes[i].live]
            promoted: frozenset[int] = frozenset(starved)
            order = [*starved, *(i for i in _ORDER if i not in promoted)]
        else:
            promoted, order = _NONE, list(_ORDER)
        reserved: dict[str, int] = {}
        blocked_ids: set[int] = set()
        now = _clock()
        for index in order:
            queue = lanes[index]
            dispatched = True
            blocked_here = 0
            while dispatched and queue.live and blocked_here < BLOCKED_LIMIT:
                dispatched = False
                for job in queue.candidates(SCAN_LIMIT):
                    if job.id in blocked_ids:
                        continue
                    if (
                        job.status is JobStatus.QUEUED
                        and job.deadline_at is not None
                        and now >= job.deadline_at
                    ):
                        self._on_deadline(job)
                        continue
                    resuming = job.status is JobStatus.YIELDED
                    needs = job.declared if resuming else job.needs
                    if self._pool.fits(needs, reserved):
                        queue.take(job)
                        self._resume(job) if resuming else self._start(job)
                        self._account_bypass(index)
                        dispatched = True
                        continue
                    blocked_ids.add(job.id)
                    blocked_here += 1
                    if index not in promoted:
                        if self._preemptible:
                            self._maybe_preempt(job)
                        for name, amount in needs.items():
                            reserved[name] = reserved.get(name, 0) + amount
                    if blocked_here >= BLOCKED_LIMIT:
                        break

    def _account_bypass(self, index: int) -> None:
        bypassed, lanes = self._bypassed, self._lanes
        bypassed[index] = 0
        for lower in range(index + 1, len(lanes)):
            if lanes[lower].live:
                bypassed[lower] += 1

    def _start(self, job: Job) -> None:
        in_use = self._pool.in_use
        for name, amount in job.needs.items():
            in_use[name] += amount
        job.holding = True
        job.status = _RUNNING
        job.started_at = now = _clock()
        self._running[job.id] = job
        spec = job.spec
        if spec.preemptible:
            self._preemptible[job.id] = job
        stats = job.stats
        stats.started += 1
        stats.wait.append(now - job.submitted_at)
        self._record((time.time(), _STARTED, job.id, spec.lane, spec.kind, spec.owner, ""))
        runner = self._idle.pop()
        runner.job = job
        waiter = runner.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume(self, job: Job) -> None:
        self._pool.acquire(job.declared)
        job.holding = True
        job.status = JobStatus.RUNNING
        spec = job.spec
        self._record((time.time(), TraceKind.RESUMED, job.id, spec.lane, spec.kind, spec.owner, ""))
        if job.resume is not None and not job.resume.done():
            job.resume.set_result(None)

    def _maybe_preempt(self, blocked: Job) -> None:
        short = self._pool.shortfall(blocked.declared)
        for name, missing in short.items():
            victims = [
                j
                for j in self._preemptible.values()
                if j.holding and j.spec.lane > blocked.spec.lane and j.declared.get(name, 0) > 0
            ]
            victims.sort(key=lambda j: (-j.spec.lane, -j.id))
            for victim in victims:
                if missing <= 0:
                    break
                missing -= victim.declared[name]
                if not victim.yield_requested:
                    victim.yield_requested = True
                    s = victim.spec
                    self._record(
                        (
                            time.time(),
                            TraceKind.YIELDED,
                            victim.id,
                            s.lane,
                            s.kind,
                            s.owner,
                            "requested",
                        )
                    )

    async def _yield_job(self, job: Job) -> None:
        """At a checkpoint of a job asked to yield: give its resources back until re-admitted."""
        if not job.yield_requested or job.status is not JobStatus.RUNNING:
            return
        assert self._loop is not None
        job.yield_requested = False
        self._pool.release(job.declared)
        job.holding = False
        job.status = JobStatus.YIELDED
        job.yields += 1
        spec = job.spec
        job.stats.yielded += 1
        self._record((time.time(), TraceKind.YIELDED, job.id, spec.lane, spec.kind, spec.owner, ""))
        self._lanes[spec.lane].push_resumed(job)
        job.resume = self._loop.create_future()
        self._dirty = True
        self._pump()
        try:
            await job.resume
        finally:
            job.resume = None
