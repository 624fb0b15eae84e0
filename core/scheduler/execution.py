"""Running, finishing and cancelling jobs (a mixin of :class:`core.scheduler.Scheduler`).

Runners are a fixed set of coroutines owned by the scheduler. A runner executes async jobs
inline (no task per job); to stop a running async job at once, the scheduler cancels the
runner's task on the job's behalf and the runner absorbs that cancellation. Blocking jobs
are awaited on the executors and stop cooperatively (their thread cannot be killed): they keep
their resources until their code returns, but their submitter is answered at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import TYPE_CHECKING, Any

from core.errors import DeadlineExceeded, JobCancelled, SchedulerError, WorkerDied
from core.scheduler.executors import Executors
from core.scheduler.job import Job
from core.scheduler.queues import LaneQueue
from core.scheduler.resources import ResourcePool
from core.scheduler.stats import Counters, TraceBuffer
from core.scheduler.types import ExecMode, JobStatus, TraceKind

if TYPE_CHECKING:
    from core.scheduler.scheduler import _Runner

log = logging.getLogger(__name__)


class Execution:
    _pool: ResourcePool
    _lanes: list[LaneQueue]
    _jobs: dict[int, Job]
    _running: dict[int, Job]
    _preemptible: dict[int, Job]
    _history: deque[Job]
    _counters: Counters
    _trace: TraceBuffer
    _idle: list[_Runner]
    _executors: Executors | None
    _loop: asyncio.AbstractEventLoop | None
    _drained: asyncio.Event
    _dirty: bool

    def _pump(self) -> None:
        raise NotImplementedError

    async def _runner_main(self, runner: _Runner) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = runner.job
            if job is None:
                runner.waiter = loop.create_future()
                try:
                    await runner.waiter
                finally:
                    runner.waiter = None
                continue
            runner.job = None
            runner.current = job
            job.runner = runner
            await self._execute(job, loop)
            runner.current = None
            job.runner = None
            self._idle.append(
                runner
            )  # before releasing: the pump may hand this runner the next job
            self._release(job)

    async def _execute(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        mode = job.spec.mode
        executors = self._executors
        assert executors is not None
        try:
            if mode is ExecMode.ASYNC:
                result = await job.fn(job.ctx, *job.args)
            elif mode is ExecMode.THREAD:
                result = await loop.run_in_executor(executors.threads, _call_blocking, job)
            else:
                assert executors.processes is not None, (
                    "process_workers is 0: PROCESS jobs are disabled"
                )
                result = await loop.run_in_executor(executors.processes, partial(job.fn, *job.args))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if job.kill_requested and task is not None and task.cancelling():
                task.uncancel()
                self._settle(job, None, JobCancelled("cancelled"))
                return
            self._settle(job, None, JobCancelled("scheduler stopped"))
            raise
        except BrokenProcessPool:
            executors.replace_broken_process_pool()
            self._settle(job, None, WorkerDied(f"the worker process running job {job.id} died"))
        except Exception as exc:  # noqa: BLE001 - a job's own failure goes to its submitter only
            self._settle(job, None, exc)
        else:
            self._settle(job, result, None)

    def _settle(self, job: Job, result: Any, error: BaseException | None) -> None:
        """Record how the job's code ended; its submitter may already have been answered."""
        assert self._loop is not None
        job.finished_at = self._loop.time()
        if job.status.finished:  # cancelled or expired while running: already answered
            return
        spec = job.spec
        ctx = job.ctx
        assert ctx is not None
        if error is None:
            job.status = JobStatus.COMPLETED
            if not job.future.done():
                job.future.set_result(result)
            job.close_channel()
            event, trace = "completed", TraceKind.COMPLETED
            if job.started_at is not None:
                self._counters.sample(
                    self._counters.run, spec.lane, spec.kind, job.finished_at - job.started_at
                )
        else:
            if isinstance(error, JobCancelled):
                job.status, event, trace = JobStatus.CANCELLED, "cancelled", TraceKind.CANCELLED
            else:
                job.status, event, trace = JobStatus.FAILED, "failed", TraceKind.FAILED
                log.info("job %d (%s) failed: %r", job.id, spec.kind, error)
            job.error = f"{type(error).__name__}: {error}"
            _fail_future(job.future, error)
            job.close_channel(error)
        self._counters.add(spec.lane, spec.kind, event)
        self._trace.add(time.time(), trace, job.id, spec.lane, spec.kind, spec.owner, job.error)

    def _release(self, job: Job) -> None:
        """The job's code has returned: give back everything it held and dispatch."""
        if job.holding:
            self._pool.release(job.needs)  # declared resources and the slot
            job.holding = False
        else:  # preempted and then stopped: only the slot is still held
            self._pool.in_use[job.slot] -= 1
        self._running.pop(job.id, None)
        self._preemptible.pop(job.id, None)
        self._forget(job)
        self._dirty = True
        self._pump()

    def _forget(self, job: Job) -> None:
        if job.deadline_timer is not None:
            job.deadline_timer.cancel()
            job.deadline_timer = None
        if self._jobs.pop(job.id, None) is not None:
            self._history.append(job)
        if not self._jobs:
            self._drained.set()

    # -- cancellation and deadlines ---------------------------------------------------------------
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
        if job.status.finished:
            return False
        spec, ctx = job.spec, job.ctx
        assert ctx is not None and self._loop is not None
        previous = job.status
        if previous in (JobStatus.QUEUED, JobStatus.YIELDED):
            self._lanes[spec.lane].discard(job)
            self._dirty = True  # the owner's next job may now be a head
        job.status = status
        job.error = str(error)
        ctx.cancel_error = error
        _fail_future(job.future, error)
        job.close_channel(error)
        event = "cancelled" if status is JobStatus.CANCELLED else "expired"
        self._counters.add(spec.lane, spec.kind, event)
        trace = TraceKind.CANCELLED if status is JobStatus.CANCELLED else TraceKind.EXPIRED
        self._trace.add(time.time(), trace, job.id, spec.lane, spec.kind, spec.owner, job.error)
        if previous is JobStatus.QUEUED:
            job.finished_at = self._loop.time()
            self._forget(job)
            return True
        if previous is JobStatus.YIELDED and job.resume is not None and not job.resume.done():
            job.resume.set_result(None)  # its checkpoint wakes up and raises the error
        runner = job.runner
        if (
            spec.mode is ExecMode.ASYNC
            and runner is not None
            and runner.task is not None
            and not job.kill_requested
        ):
            job.kill_requested = True
            runner.task.cancel()
        return True


def _call_blocking(job: Job) -> Any:
    return job.fn(job.ctx, *job.args)


def _fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # mark retrieved: an unawaited failed job is not an "unhandled" error
