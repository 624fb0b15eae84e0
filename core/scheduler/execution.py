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
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import TYPE_CHECKING, Any

from core.errors import DeadlineExceeded, JobCancelled, SchedulerError, WorkerDied
from core.scheduler.executors import Executors
from core.scheduler.job import Job
from core.scheduler.queues import LaneQueue
from core.scheduler.resources import ResourcePool
from core.scheduler.stats import Counters, TraceBuffer
from core.scheduler.types import ASYNC, COMPLETED, DONE, ExecMode, JobStatus, Lane, TraceKind

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
    _drain_waiter: asyncio.Future[None] | None
    _record: Callable[[tuple[float, TraceKind, int, Lane, str, str, str]], None]
    _dirty: bool

    def _pump(self) -> None:
        raise NotImplementedError

    def _hand_off(self, freed: Mapping[str, int]) -> bool:
        raise NotImplementedError  # Dispatch._hand_off: start the next job without a pass

    async def _runner_main(self, runner: _Runner) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        idle = self._idle
        while True:
            job = runner.job
            if job is None:
                waiter: asyncio.Future[None] = loop.create_future()
                runner.waiter = waiter
                try:
                    await waiter
                finally:
                    runner.waiter = None
                continue
            runner.job = None
            runner.current = job
            job.runner = runner
            try:
                if job.spec.mode is ASYNC:
                    result = await job.fn(job.ctx, *job.args)
                else:
                    result = await self._run_blocking(job, loop)
            except asyncio.CancelledError:
                if not (job.kill_requested and task.cancelling()):
                    self._settle(job, None, JobCancelled("scheduler stopped"))
                    raise
                task.uncancel()  # the cancellation was aimed at this job, not at the runner
                self._settle(job, None, JobCancelled("cancelled"))
            except BrokenProcessPool:
                assert self._executors is not None
                self._executors.replace_broken_process_pool()
                self._settle(job, None, WorkerDied(f"the worker process running job {job.id} died"))
            except Exception as exc:  # noqa: BLE001 - a job's own failure goes to its submitter only
                self._settle(job, None, exc)
            else:
                self._settle(job, result, None)
                if job.kill_requested and task.cancelling():
                    await _absorb_cancel(task)  # cancelled itself, then returned without waiting
            runner.current = None
            job.runner = None
            idle.append(runner)  # before releasing: the pump may hand this runner the next job
            self._release(job)

    async def _run_blocking(self, job: Job, loop: asyncio.AbstractEventLoop) -> Any:
        executors = self._executors
        assert executors is not None
        if job.spec.mode is ExecMode.THREAD:
            return await loop.run_in_executor(executors.threads, _call_blocking, job)
        assert executors.processes is not None, "process_workers is 0: PROCESS jobs are disabled"
        return await loop.run_in_executor(executors.processes, partial(job.fn, *job.args))

    def _settle(self, job: Job, result: Any, error: BaseException | None) -> None:
        """Record how the job's code ended; its submitter may already have been answered."""
        job.finished_at = now = time.monotonic()
        if job.status.finished:  # cancelled or expired while running: already answered
            return
        spec, stats = job.spec, job.stats
        if error is None:
            job.status = COMPLETED
            if not job.future.done():
                job.future.set_result(result)
            job.close_channel()
            stats.completed += 1
            if job.started_at is not None:
                stats.run.append(now - job.started_at)
            self._record((time.time(), DONE, job.id, spec.lane, spec.kind, spec.owner, ""))
            return
        if isinstance(error, JobCancelled):
            job.status, trace = JobStatus.CANCELLED, TraceKind.CANCELLED
            stats.cancelled += 1
        else:
            job.status, trace = JobStatus.FAILED, TraceKind.FAILED
            stats.failed += 1
            log.info("job %d (%s) failed: %r", job.id, spec.kind, error)
        job.error = f"{type(error).__name__}: {error}"
        _fail_future(job.future, error)
        job.close_channel(error)
        self._record((time.time(), trace, job.id, spec.lane, spec.kind, spec.owner, job.error))

    def _release(self, job: Job) -> None:
        """The job's code has returned: give back everything it held and dispatch."""
        freed = job.needs if job.holding else None
        if job.holding:
            self._pool.release(job.needs)  # declared resources and the slot
            job.holding = False
        else:  # preempted and then stopped: only the slot and keep_on_yield are still held
            self._pool.release(job.kept())
        del self._running[job.id]
        if job.spec.preemptible:
            self._preemptible.pop(job.id, None)
        self._forget(job)
        lanes = self._lanes
        if not (lanes[0].live or lanes[1].live or lanes[2].live):
            self._dirty = True  # nothing queued: the next job that queues runs a pass
            return
        if self._dirty or freed is None or not self._hand_off(freed):
            self._dirty = True
            self._pump()

    def _forget(self, job: Job) -> None:
        if job.deadline_timer is not None:
            job.deadline_timer.cancel()
            job.deadline_timer = None
        jobs = self._jobs
        if jobs.pop(job.id, None) is not None:
            self._history.append(job)
        if not jobs and self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

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


async def _absorb_cancel(task: asyncio.Task[Any]) -> None:
    """Take a cancellation still pending for a finished job so it cannot hit the next one."""
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        task.uncancel()


def _call_blocking(job: Job) -> Any:
    return job.fn(job.ctx, *job.args)


def _fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # mark retrieved: an unawaited failed job is not an "unhandled" error
