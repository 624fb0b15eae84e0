"""Cancellation of queued and running jobs, and deadlines."""

from __future__ import annotations

import asyncio
import threading

import pytest

from core.errors import DeadlineExceeded, JobCancelled
from core.scheduler import ExecMode, JobContext, JobHandle, JobSpec, JobStatus, Lane

from .conftest import MakeScheduler
from .helpers import Gate, noop

CPU = {"cpu": 1}


async def test_cancel_queued_job_leaves_at_once(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    gate = Gate()
    blocker = s.submit(gate, spec=JobSpec(kind="b", resources=CPU))
    await gate.started.wait()
    ran: list[int] = []

    async def job(ctx: JobContext) -> None:
        ran.append(1)

    h = s.submit(job, spec=JobSpec(kind="q", resources=CPU))
    assert h.cancel()
    assert h.status is JobStatus.CANCELLED
    assert s.stats()["lanes"]["interactive"]["queued"] == 0
    with pytest.raises(JobCancelled):
        await h
    gate.opened.set()
    await blocker
    assert ran == []
    assert not h.cancel()  # already finished


async def test_cancel_running_async_job(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    started = asyncio.Event()

    async def forever(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    h = s.submit(forever, spec=JobSpec(kind="f", resources=CPU))
    await started.wait()
    h.cancel()
    with pytest.raises(JobCancelled):
        await h
    # the runner survived and the resource came back
    await s.submit(noop, spec=JobSpec(kind="n", resources=CPU))
    assert s.stats()["resources"]["cpu"]["used"] == 0


async def test_job_cancelling_itself_then_returning_spares_the_next_job(
    make_scheduler: MakeScheduler,
) -> None:
    s = await make_scheduler(runners=1)
    own: list[JobHandle[None]] = []

    async def self_cancel(ctx: JobContext) -> None:
        own[0].cancel("changed its mind")  # no await after this: the cancel is still pending

    own.append(s.submit(self_cancel, spec=JobSpec(kind="self")))
    follower = s.submit(noop, spec=JobSpec(kind="next"))  # queued for the same single runner
    with pytest.raises(JobCancelled):
        await own[0]
    assert await follower is None
    assert follower.status is JobStatus.COMPLETED
    assert await s.submit(noop, spec=JobSpec(kind="after")) is None


async def test_cancel_streaming_thread_job_stops_at_next_chunk(
    make_scheduler: MakeScheduler,
) -> None:
    s = await make_scheduler()
    produced: list[int] = []
    finished = threading.Event()

    def tokens(ctx: JobContext) -> None:
        try:
            for i in range(10_000):
                ctx.checkpoint_blocking()
                produced.append(i)
                ctx.emit_blocking(i)
        finally:
            finished.set()

    h = s.submit(
        tokens, spec=JobSpec(kind="llm", mode=ExecMode.THREAD, resources=CPU, stream_buffer=2)
    )
    got = []
    with pytest.raises(JobCancelled):
        async for tok in h.stream():
            got.append(tok)
            if len(got) == 3:
                h.cancel()
    await asyncio.get_running_loop().run_in_executor(None, finished.wait, 5)
    assert finished.is_set()
    assert len(produced) <= len(got) + 3  # at most the buffer plus the chunk in flight


async def test_expired_queued_job_never_starts(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    gate = Gate()
    blocker = s.submit(gate, spec=JobSpec(kind="b", resources=CPU))
    await gate.started.wait()
    ran: list[int] = []

    async def job(ctx: JobContext) -> None:
        ran.append(1)

    h = s.submit(job, spec=JobSpec(kind="late", resources=CPU, deadline_s=0.02))
    with pytest.raises(DeadlineExceeded):
        await h
    assert h.status is JobStatus.EXPIRED
    gate.opened.set()
    await blocker
    await asyncio.sleep(0)
    assert ran == []
    assert s.stats()["kinds"]["interactive"]["late"]["expired"] == 1


async def test_running_job_past_deadline_is_stopped(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()

    async def slow(ctx: JobContext) -> None:
        await asyncio.sleep(3600)

    h = s.submit(slow, spec=JobSpec(kind="slow", lane=Lane.REALTIME, deadline_s=0.05))
    with pytest.raises(DeadlineExceeded):
        await h
    assert s.stats()["lanes"]["realtime"]["running"] == 0
