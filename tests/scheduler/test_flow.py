"""Backpressure, streaming, step preemption, process jobs and failure isolation."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.errors import QueueFull, WorkerDied
from core.scheduler import ExecMode, JobContext, JobSpec, JobStatus, Lane

from .conftest import MakeScheduler
from .helpers import Gate, die, noop, square


async def test_lane_and_owner_limits_raise_queue_full(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(lane_queue_limit=5, owner_queue_limit=3)
    gate = Gate()
    blocker = s.submit(gate, spec=JobSpec(kind="b", resources={"cpu": 1}))
    await gate.started.wait()
    spec_a = JobSpec(kind="d", owner="a", resources={"cpu": 1})
    handles = [s.submit(noop, spec=spec_a) for _ in range(3)]
    with pytest.raises(QueueFull) as owner_full:
        s.submit(noop, spec=spec_a)
    assert owner_full.value.limit == 3 and owner_full.value.scope == "owner:a"
    handles += [
        s.submit(noop, spec=JobSpec(kind="d", owner="b", resources={"cpu": 1})) for _ in range(2)
    ]
    with pytest.raises(QueueFull) as lane_full:
        s.submit(noop, spec=JobSpec(kind="d", owner="c", resources={"cpu": 1}))
    assert lane_full.value.limit == 5 and lane_full.value.retryable
    assert "5 jobs" in str(lane_full.value)
    # other lanes are unaffected
    await s.submit(noop, spec=JobSpec(kind="rt", lane=Lane.REALTIME))
    gate.opened.set()
    await asyncio.gather(blocker.result(), *(h.result() for h in handles))


async def test_stream_applies_backpressure(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    produced: list[int] = []

    async def gen(ctx: JobContext) -> str:
        for i in range(10):
            produced.append(i)
            await ctx.emit(i)
        return "end"

    h = s.submit(gen, spec=JobSpec(kind="g", stream_buffer=2))
    await asyncio.sleep(0.02)
    assert len(produced) == 3  # two buffered, the third waits in emit
    assert [x async for x in h.stream()] == list(range(10))
    assert await h == "end"


async def test_stream_reports_the_job_error(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()

    async def broken(ctx: JobContext) -> None:
        await ctx.emit("a")
        raise ValueError("backend exploded")

    h = s.submit(broken, spec=JobSpec(kind="g"))
    got = []
    with pytest.raises(ValueError, match="exploded"):
        async for x in h.stream():
            got.append(x)
    assert got == ["a"]
    assert h.status is JobStatus.FAILED


async def test_background_step_job_yields_to_realtime(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(resources={"vram:0": 8192})
    events: list[str] = []
    step_s = 0.005

    def draw(ctx: JobContext, steps: int) -> str:
        for i in range(steps):
            ctx.checkpoint_blocking()
            time.sleep(step_s)
            events.append(f"sd{i}")
        return "image"

    sd = s.submit(
        draw,
        40,
        spec=JobSpec(
            kind="sd",
            lane=Lane.BACKGROUND,
            mode=ExecMode.THREAD,
            resources={"vram:0": 6144},
            preemptible=True,
        ),
    )
    while len(events) < 3:  # noqa: ASYNC110 - polling a thread's progress
        await asyncio.sleep(step_s)

    async def voice(ctx: JobContext) -> int:
        events.append("voice")
        return len([e for e in events if e.startswith("sd")])

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    steps_before_voice = await s.submit(
        voice, spec=JobSpec(kind="llm", lane=Lane.REALTIME, resources={"vram:0": 6144})
    )
    waited_steps = steps_before_voice - 3
    assert waited_steps <= 2  # the step in flight (plus one scheduling hop), never the image
    assert loop.time() - t0 < 40 * step_s
    assert await sd == "image"
    assert events.count("voice") == 1 and len(events) == 41
    assert s.job(sd.id)["yields"] == 1  # type: ignore[index]
    kinds = [e.event.value for e in s.trace() if e.job_id == sd.id]
    assert kinds[-3:] == ["yielded", "resumed", "completed"]


async def test_cancel_while_preempted(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(resources={"vram:0": 8192})
    gate = Gate()
    steps: list[int] = []

    async def draw(ctx: JobContext) -> None:
        for i in range(1000):
            await ctx.checkpoint()
            steps.append(i)
            await asyncio.sleep(0.001)

    sd = s.submit(
        draw,
        spec=JobSpec(kind="sd", lane=Lane.BACKGROUND, resources={"vram:0": 8192}, preemptible=True),
    )
    while not steps:  # noqa: ASYNC110 - polling the job's progress
        await asyncio.sleep(0.001)
    rt = s.submit(gate, spec=JobSpec(kind="asr", lane=Lane.REALTIME, resources={"vram:0": 8192}))
    await gate.started.wait()
    assert sd.status is JobStatus.YIELDED
    sd.cancel()
    gate.opened.set()
    await rt
    with pytest.raises(Exception, match="cancelled"):
        await sd
    await asyncio.sleep(0.01)
    assert s.stats()["resources"]["vram:0"]["used"] == 0


async def test_failing_job_does_not_affect_others(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(resources={"cpu": 2})

    async def boom(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    def thread_boom(ctx: JobContext) -> None:
        raise OSError("disk")

    async def fine(ctx: JobContext, x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    handles = []
    for i in range(20):
        handles.append(
            s.submit(
                boom if i % 3 == 0 else fine, *(() if i % 3 == 0 else (i,)), spec=JobSpec(kind="m")
            )
        )
    handles.append(s.submit(thread_boom, spec=JobSpec(kind="t", mode=ExecMode.THREAD)))
    results = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
    assert sum(isinstance(r, RuntimeError) for r in results) == 7
    assert isinstance(results[-1], OSError)
    assert [r for r in results if isinstance(r, int)] == [i for i in range(20) if i % 3]
    assert s.stats()["kinds"]["interactive"]["m"]["failed"] == 7


async def test_process_jobs_and_a_dying_worker(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(process_workers=1)
    assert await s.submit(square, 7, spec=JobSpec(kind="cpu", mode=ExecMode.PROCESS)) == 49
    with pytest.raises(WorkerDied) as died:
        await s.submit(die, spec=JobSpec(kind="cpu", mode=ExecMode.PROCESS))
    assert died.value.retryable
    assert await s.submit(square, 8, spec=JobSpec(kind="cpu", mode=ExecMode.PROCESS)) == 64
