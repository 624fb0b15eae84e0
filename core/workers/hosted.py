"""The model manager's backend object for a model placed in a worker (``placement="process"``).

:class:`WorkerModel` stands where a loaded backend would: the manager "loads" it with
``await aload()`` (start the worker, then a ``load`` call: the weights load inside the worker)
and unloads it with ``await aclose()`` (stop the worker: its memory goes back to the system at
once). Jobs call :meth:`WorkerModel.call` from an ASYNC scheduler job. A worker that died is
started again (and the model loaded again) by the next call, inside the job that makes it: the
job that was running when it died got WorkerDied, the next one is served.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from core.errors import ModelError
from core.models.base import ModelBackend
from core.scheduler import JobContext
from core.workers.base import (
    LOAD,
    OFFLOAD,
    RESTORE,
    ChunkCallback,
    StepCallback,
    Worker,
    WorkerCall,
    WorkerState,
    no_chunk,
    no_step,
)

log = logging.getLogger(__name__)


class WorkerModel(ModelBackend):
    # a paused call keeps the worker busy: another job on this model must wait for it
    pause_keeps_model: ClassVar[bool] = True

    def __init__(self, worker: Worker, *, stop_timeout_s: float) -> None:
        self.worker = worker
        self._stop_timeout_s = stop_timeout_s
        self.load_s: float | None = None
        self.measured_mb: float | None = None
        self.restarts = 0  # starts after a death
        self._evicted = False  # killed by the manager's eviction: the next start is no restart
        self._movable = False  # the hosted backend is offloadable (reported by its load)

    def load(self) -> None:
        raise ModelError(f"{self.worker.name} runs in a worker process: use it from an ASYNC job")

    def unload(self) -> None:
        """Evicted (sync, under the manager's lock): kill the worker; its memory is freed at
        once and the next use starts a fresh one."""
        terminate = getattr(self.worker, "terminate", None)
        if terminate is not None:
            terminate()
            self._evicted = True

    @property
    def dead(self) -> bool:
        """The worker died (kill -9, a native crash): the manager drops its weights."""
        return self.worker.state is WorkerState.DEAD and not self._evicted

    async def aload(self) -> None:
        worker = self.worker
        if worker.state is WorkerState.DEAD and not self._evicted:
            self.restarts += 1
        self._evicted = False
        if worker.state is not WorkerState.IDLE:
            await worker.start()
        info = await worker.call(WorkerCall(worker.name, LOAD), on_step=no_step, on_chunk=no_chunk)
        self.load_s, self.measured_mb = info["load_s"], info["measured_mb"]
        self._movable = bool(info.get("offloadable", False))

    @property
    def offloads_async(self) -> bool:
        """Its weights can move to host memory while its job is paused at a step (the hosted
        backend is offloadable, and the worker takes commands at a step: ``at_step``)."""
        return self._movable and hasattr(self.worker, "at_step")

    async def aoffload(self) -> float:
        """The weights to host memory, while the running call waits at a step (its job is
        paused); the seconds it took in the worker."""
        seconds: float = await self.worker.at_step(OFFLOAD)  # type: ignore[attr-defined]
        return seconds

    async def arestore(self) -> float:
        """The weights back on the device: at the waiting step, or as a call when idle (a job
        that was cancelled while its model was offloaded)."""
        worker = self.worker
        if getattr(worker, "parked", False):
            parked: float = await worker.at_step(RESTORE)  # type: ignore[attr-defined]
            return parked
        idle: float = await worker.call(
            WorkerCall(worker.name, RESTORE), on_step=no_step, on_chunk=no_chunk
        )
        return idle

    async def aclose(self) -> None:
        await self.worker.stop(self._stop_timeout_s)

    async def call(
        self, call: WorkerCall, *, on_step: StepCallback, on_chunk: ChunkCallback = no_chunk
    ) -> Any:
        if self.worker.state in (WorkerState.DEAD, WorkerState.STOPPED, WorkerState.NEW):
            log.warning("worker %s is %s: starting it again", self.worker.name, self.worker.state)
            await self.aload()
        return await self.worker.call(call, on_step=on_step, on_chunk=on_chunk)


def job_steps(ctx: JobContext) -> StepCallback:
    """An ``on_step`` running the job's checkpoint (cancel point; pauses under preemption)."""

    async def on_step(step: int) -> None:
        await ctx.checkpoint()

    return on_step


def job_chunks(ctx: JobContext) -> ChunkCallback:
    """An ``on_chunk`` streaming each chunk to the job's consumer."""
    return ctx.emit
