"""Executor threads are a scheduler resource (issue 14): a blocking job's thread cannot be
preempted (a paused job waits on it), so ``realtime_threads`` of them are kept for the
REALTIME lane, and a voice job starts at the next dispatch however many chats hold threads."""

from __future__ import annotations

import asyncio
import threading

from core.scheduler import ExecMode, JobContext, JobSpec, JobStatus, Lane

from .conftest import MakeScheduler


def hold(ctx: JobContext, release: threading.Event) -> str:
    """A blocking job that keeps its thread until released (a chat waiting, or paused)."""
    release.wait(10)
    return "held"


def voice(ctx: JobContext) -> str:
    return "voice"


def blocking(lane: Lane, owner: str) -> JobSpec:
    return JobSpec(kind="chat", lane=lane, owner=owner, mode=ExecMode.THREAD)


async def test_a_realtime_job_starts_at_once_while_lower_lanes_hold_every_thread_they_may(
    make_scheduler: MakeScheduler,
) -> None:
    s = await make_scheduler(thread_workers=4, realtime_threads=1)
    release = threading.Event()
    try:
        chats = [
            s.submit(hold, release, spec=blocking(lane, f"qq:{i}"))
            for i, lane in enumerate([Lane.INTERACTIVE] * 3 + [Lane.BACKGROUND] * 3)
        ]
        await asyncio.sleep(0.05)
        handle = s.submit(voice, spec=blocking(Lane.REALTIME, "device:a"))
        assert await asyncio.wait_for(handle, 2.0) == "voice"  # no chat had to finish first
        assert all(not c.done() for c in chats)
        statuses = [c.status for c in chats]
        assert statuses.count(JobStatus.RUNNING) == 3  # the fourth thread is REALTIME's
        slots = s.stats()["slots"]
        assert slots["thread"]["used"] == 3 and slots["thread:shared"]["budget"] == 3
    finally:
        release.set()
    assert [await c for c in chats] == ["held"] * 6


async def test_realtime_jobs_may_use_every_thread_and_async_jobs_take_none(
    make_scheduler: MakeScheduler,
) -> None:
    s = await make_scheduler(thread_workers=3, realtime_threads=2)
    release = threading.Event()
    try:
        voices = [s.submit(hold, release, spec=blocking(Lane.REALTIME, f"d:{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        assert all(v.status is JobStatus.RUNNING for v in voices)

        async def quick(ctx: JobContext) -> str:
            return "async"

        spec = JobSpec(kind="chat", lane=Lane.INTERACTIVE, owner="qq:1")  # ASYNC: a runner
        assert await asyncio.wait_for(s.submit(quick, spec=spec), 2.0) == "async"
    finally:
        release.set()
    assert [await v for v in voices] == ["held"] * 3


async def test_a_small_pool_still_runs_lower_lanes(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(thread_workers=1, realtime_threads=2)
    assert s.stats()["slots"]["thread:shared"]["budget"] == 1
    assert await asyncio.wait_for(s.submit(voice, spec=blocking(Lane.BACKGROUND, "qq")), 2) == (
        "voice"
    )
