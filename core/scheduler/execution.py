"""The runners: a fixed set of coroutines that execute the jobs the dispatcher starts.

:class:`Runners` owns the runner coroutines, the executors (thread and process pools) and the
table of running jobs. A runner executes async jobs inline (no task per job); to stop a
running async job at once, :meth:`Runners.kill` cancels the runner's task on the job's behalf
and the runner absorbs that cancellation. Blocking jobs are awaited on the executors and stop
cooperatively (their thread cannot be killed): they keep their resources until their code
returns, but their submitter is answered at once. When a job's code has returned, the runner
records how it ended (:meth:`Runners.settle`), goes idle, and tells the dispatcher
(:meth:`~core.scheduler.dispatch.Dispatcher.finished`), which releases what the job held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

from core.errors import JobCancelled, WorkerDied
from core.scheduler.dispatch import Dispatcher, Record
from core.scheduler.executors import Executors
from core.scheduler.job import Job
from core.scheduler.types import ASYNC, COMPLETED, DONE, ExecMode, JobStatus, TraceKind

log = logging.getLogger(__name__)


class Runner:
    """One runner coroutine and the job it was handed (idle when both are None)."""

    __slots__ = ("current", "job", "name", "task", "waiter")

    def __init__(self, name: str) -> None:
        self.name = name
        self.job: Job | None = None  # assigned, not yet started
        self.current: Job | None = None  # executing now
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class Runners:
    __slots__ = ("_dispatcher", "_forget", "_record", "all", "executors", "idle", "running")

    def __init__(
        self, dispatcher: Dispatcher, record: Record, forget: Callable[[Job], None]
    ) -> None:
        self._dispatcher = dispatcher
        self._record = record
        self._forget = forget  # the scheduler's job table: the job is done with
        self.all: list[Runner] = []
        self.idle: list[Runner] = []
        self.running: dict[int, Job] = {}  # started, code not yet returned (incl. paused)
        self.executors: Executors | None = None

    async def start(self, count: int, executors: Executors) -> None:
        """Create ``count`` runner tasks (owned here, cancelled by :meth:`stop`)."""
        self.executors = executors
        loop = asyncio.get_running_loop()
        for i in range(count):
            runner = Runner(f"scheduler-runner-{i}")
            runner.task = loop.create_task(self._main(runner), name=runner.name)
            self.all.append(runner)
            self.idle.append(runner)

    async def stop(self, timeout_s: float) -> None:
        for runner in self.all:
            if runner.task is not None:
                runner.task.cancel()
        tasks = [r.task for r in self.all if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s or None)
        if self.executors is not None:
            self.executors.shutdown()

    def assign(self, job: Job) -> None:
        """Hand a started job to an idle runner (the dispatcher checked the slot is free)."""
        self.running[job.id] = job
        runner = self.idle.pop()
        runner.job = job
        waiter = runner.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def kill(self, job: Job) -> None:
        """Stop a running async job at once: cancel its runner's task on its behalf."""
        runner = job.runner
        if runner is not None and runner.task is not None and not job.kill_requested:
            job.kill_requested = True
            runner.task.cancel()

    async def _main(self, runner: Runner) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        idle, running, dispatcher = self.idle, self.running, self._dispatcher
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
                    self.settle(job, None, JobCancelled("scheduler stopped"))
                    raise
                task.uncancel()  # the cancellation was aimed at this job, not at the runner
                self.settle(job, None, JobCancelled("cancelled"))
            except BrokenProcessPool:
                assert self.executors is not None
                self.executors.replace_broken_process_pool()
                self.settle(job, None, WorkerDied(f"the worker process running job {job.id} died"))
            except Exception as exc:  # noqa: BLE001 - a job's own failure goes to its submitter only
                self.settle(job, None, exc)
            else:
                self.settle(job, result, None)
                if job.kill_requested and task.cancelling():
                    await _absorb_cancel(task)  # cancelled itself, then returned without waiting
            runner.current = None
            job.runner = None
            idle.append(runner)  # before the dispatcher runs: it may hand this runner the next job
            del running[job.id]
            self._forget(job)
            dispatcher.finished(job)

    async def _run_blocking(self, job: Job, loop: asyncio.AbstractEventLoop) -> Any:
        executors = self.executors
        assert executors is not None
        if job.spec.mode is ExecMode.THREAD:
            return await loop.run_in_executor(executors.threads, _call_blocking, job)
        assert executors.processes is not None, "process_workers is 0: PROCESS jobs are disabled"
        return await loop.run_in_executor(executors.processes, partial(job.fn, *job.args))

    def settle(self, job: Job, result: Any, error: BaseException | None) -> None:
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
        fail_future(job.future, error)
        job.close_channel(error)
        self._record((time.time(), trace, job.id, spec.lane, spec.kind, spec.owner, job.error))


async def _absorb_cancel(task: asyncio.Task[Any]) -> None:
    """Take a cancellation still pending for a finished job so it cannot hit the next one."""
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        task.uncancel()


def _call_blocking(job: Job) -> Any:
    return job.fn(job.ctx, *job.args)


def fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # mark retrieved: an unawaited failed job is not an "unhandled" error
