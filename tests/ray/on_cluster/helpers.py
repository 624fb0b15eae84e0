"""Scheduler jobs that run stand-in model calls on a RayPool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.scheduler import ExecMode, JobContext, JobHandle, JobSpec, Lane, Scheduler
from core.workers.base import WorkerCall
from core.workers.ray_pool import RayPool

Job = Callable[[JobContext], Awaitable[Any]]


def generate_job(
    pool: RayPool,
    model: str,
    words: list[str],
    step_s: float = 0.01,
    *,
    started: list[str] | None = None,
    tag: str = "",
) -> Job:
    async def run(ctx: JobContext) -> str:
        if started is not None:
            started.append(tag)
        call = WorkerCall(model, "generate", (words, step_s), stream=True)
        result: str = await pool.call(ctx, model, call)
        return result

    return run


def submit_generate(
    scheduler: Scheduler,
    pool: RayPool,
    model: str,
    words: list[str],
    step_s: float,
    *,
    lane: Lane = Lane.INTERACTIVE,
    owner: str = "test",
    preemptible: bool = False,
    stream_buffer: int | None = None,
    started: list[str] | None = None,
    tag: str = "",
) -> JobHandle[str]:
    spec = JobSpec(
        kind=model,
        lane=lane,
        owner=owner,
        mode=ExecMode.ASYNC,
        resources=pool.job_resources(model, lane),
        preemptible=preemptible,
        keep_on_yield=pool.kept_while_paused(model) if preemptible else frozenset(),
        stream_buffer=stream_buffer,
    )
    job = generate_job(pool, model, words, step_s, started=started, tag=tag)
    return scheduler.submit(job, spec=spec)


async def stats(scheduler: Scheduler, pool: RayPool, model: str) -> dict[str, int]:
    async def run(ctx: JobContext) -> dict[str, int]:
        result: dict[str, int] = await pool.call(ctx, model, WorkerCall(model, "stats"))
        return result

    spec = JobSpec(kind=model, mode=ExecMode.ASYNC, resources=pool.job_resources(model))
    result: dict[str, int] = await scheduler.submit(run, spec=spec).result()
    return result
