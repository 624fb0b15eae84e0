"""Shutdown drain, stats and trace export, and no leaks after many mixed jobs."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import threading

import pytest

from core.errors import JobCancelled, SchedulerClosed
from core.scheduler import ExecMode, JobContext, JobSpec, Lane, Scheduler, SchedulerSettings

from .helpers import noop


async def test_shutdown_drains_then_cancels() -> None:
    s = Scheduler(SchedulerSettings(drain_timeout_s=0.2, cancel_timeout_s=1.0))
    await s.start()

    async def quick(ctx: JobContext) -> str:
        await asyncio.sleep(0.01)
        return "done"

    async def stubborn(ctx: JobContext) -> str:
        await asyncio.sleep(3600)
        return "never"

    q = s.submit(quick, spec=JobSpec(kind="q"))
    st = s.submit(stubborn, spec=JobSpec(kind="s"))
    await s.stop()
    assert await q == "done"
    with pytest.raises(JobCancelled, match="shutting down"):
        await st
    with pytest.raises(SchedulerClosed):
        s.submit(noop, spec=JobSpec(kind="late"))
    assert not s.accepting


async def test_stats_and_trace_export() -> None:
    s = Scheduler(SchedulerSettings(resources={"vram:0": 100}, trace_capacity=16))
    await s.start()
    for lane in Lane:
        await s.submit(
            noop, spec=JobSpec(kind="k", lane=lane, owner="admin", resources={"vram:0": 10})
        )
    stats = s.stats()
    assert stats["lanes"]["realtime"]["completed"] == 1
    assert set(stats["lanes"]["background"]["wait_ms"]) == {"p50", "p95", "p99", "max"}
    assert stats["resources"] == {"vram:0": {"used": 0, "budget": 100}}
    assert stats["loop_lag_ms"]["max_since_start"] >= 0
    json.dumps(stats)
    lines = s.trace_jsonl().splitlines()
    assert len(lines) == 9  # scheduled, started, completed x 3
    assert json.loads(lines[-1])["event"] == "completed"
    assert [j["lane"] for j in s.jobs(owner="admin")] == ["background", "interactive", "realtime"]
    assert s.jobs(lane="realtime", limit=1)[0]["status"] == "completed"
    await s.stop()


async def test_no_leaks_after_10k_mixed_jobs() -> None:
    tasks_at_start = len(asyncio.all_tasks())
    s = Scheduler(
        SchedulerSettings(resources={"cpu": 2, "vram:0": 1000}, thread_workers=2, runners=64)
    )
    await s.start()
    tasks_before = len(asyncio.all_tasks())
    threads_before = set(threading.enumerate())
    rng = random.Random(7)

    async def a(ctx: JobContext, fail: bool) -> int:
        await asyncio.sleep(0)
        if fail:
            raise ValueError("x")
        return 1

    async def streamer(ctx: JobContext) -> None:
        for i in range(3):
            await ctx.emit(i)

    def t(ctx: JobContext) -> int:
        ctx.checkpoint_blocking()
        return 2

    handles = []
    for i in range(10_000):
        lane = rng.choice(list(Lane))
        owner = f"o{rng.randint(0, 20)}"
        res = rng.choice([{}, {"cpu": 1}, {"vram:0": 600}])
        r = rng.random()
        if r < 0.05:
            spec = JobSpec(kind="t", lane=lane, owner=owner, mode=ExecMode.THREAD, resources=res)
            handles.append(s.submit(t, spec=spec))
        elif r < 0.15:
            h = s.submit(streamer, spec=JobSpec(kind="s", lane=lane, owner=owner, resources=res))
            handles.append(h)
        else:
            deadline = 0.001 if r > 0.97 else None
            spec = JobSpec(kind="a", lane=lane, owner=owner, resources=res, deadline_s=deadline)
            handles.append(s.submit(a, rng.random() < 0.05, spec=spec))
        if rng.random() < 0.05:
            rng.choice(handles).cancel()
        if i % 500 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
    await asyncio.sleep(0.01)
    assert len(asyncio.all_tasks()) == tasks_before
    assert set(threading.enumerate()) - threads_before == set()  # no thread was added
    assert s._jobs == {} and s._runners.running == {}
    assert s.stats()["queued_total"] == 0
    assert all(v["used"] == 0 for v in s.stats()["resources"].values())
    assert all(v["used"] == 0 for v in s.stats()["slots"].values())
    assert all(r.job is None and r.current is None for r in s._runners.all)
    await s.stop()
    del handles
    gc.collect()
    assert len(asyncio.all_tasks()) == tasks_at_start  # runners and monitor are gone too
