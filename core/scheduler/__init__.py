"""The one global scheduler: priority lanes, counted resources, streaming, cancellation.

Usage (one Scheduler per process, on the asyncio loop)::

    scheduler = Scheduler(settings.scheduler)
    await scheduler.start()

    async def work(ctx: JobContext, x: int) -> int:           # ExecMode.ASYNC (default)
        await ctx.checkpoint()                                 # cancel / preemption point
        return x * 2

    handle = scheduler.submit(work, 21, spec=JobSpec(kind="demo", lane=Lane.INTERACTIVE,
                                                     owner="qq:group:1", resources={"cpu": 1}))
    assert await handle.result() == 42                         # or: await handle

    def tokens(ctx: JobContext, prompt: str) -> None:          # ExecMode.THREAD: blocking code
        for piece in generate(prompt, check=ctx.checkpoint_blocking):
            ctx.emit_blocking(piece)                           # waits while the consumer lags
    async for piece in scheduler.submit(tokens, "hi", spec=JobSpec(kind="llm",
                                        mode=ExecMode.THREAD)).stream():
        ...

    handle.cancel()            # queued: leaves at once; running: stops at its next checkpoint/emit
    scheduler.position(handle) # jobs that will start before this one ("N ahead of you")
    await scheduler.stop()     # stop admission, drain up to drain_timeout_s, then cancel

Errors (core.errors): QueueFull (carries ``limit``), SchedulerClosed, ResourceUnsatisfiable,
JobCancelled, DeadlineExceeded, WorkerDied; a job's own exception reaches its submitter only.
Introspection for the admin API: ``stats()``, ``jobs(...)``, ``job(id)``, ``cancel(id)``,
``trace(limit)``, ``trace_jsonl()``.
"""

from core.scheduler.context import JobContext
from core.scheduler.handle import JobHandle
from core.scheduler.scheduler import SHUTDOWN_REASON, Scheduler
from core.scheduler.settings import SchedulerSettings
from core.scheduler.types import ExecMode, JobSpec, JobStatus, Lane, TraceEvent, TraceKind

__all__ = [
    "SHUTDOWN_REASON",
    "ExecMode",
    "JobContext",
    "JobHandle",
    "JobSpec",
    "JobStatus",
    "Lane",
    "Scheduler",
    "SchedulerSettings",
    "TraceEvent",
    "TraceKind",
]
