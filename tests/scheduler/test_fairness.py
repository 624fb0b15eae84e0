"""Per-owner fairness for speculative work (issue 14 item 3): a device that talks without pause
(a TV beside it) keeps at most one speculative job per key, and another device's job waits for
at most one of its jobs."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import JobCancelled
from core.scheduler import JobContext, JobSpec, JobStatus, Lane
from tests.scheduler.conftest import MakeScheduler
from tests.scheduler.helpers import Gate, record

SPECULATIVE = {"lane": Lane.REALTIME, "resources": {"cpu": 1}, "supersedes": "asr"}


async def test_a_talkers_speculative_jobs_never_stack_and_another_device_waits_one_job(
    make_scheduler: MakeScheduler,
) -> None:
    s = await make_scheduler()
    gate = Gate()
    busy = s.submit(gate, spec=JobSpec(kind="chat", lane=Lane.INTERACTIVE, resources={"cpu": 1}))
    await gate.started.wait()
    order: list[str] = []
    talker = []
    for i in range(10):  # one speculation per pause of continuous speech
        spec = JobSpec(kind="asr", owner="device:tv", **SPECULATIVE)  # type: ignore[arg-type]
        talker.append(s.submit(record, order, f"tv{i}", spec=spec))
        if i == 2:
            other = JobSpec(kind="asr", lane=Lane.REALTIME, owner="device:b", resources={"cpu": 1})
            device_b = s.submit(record, order, "b", spec=other)
    assert [h.status for h in talker[:-1]] == [JobStatus.CANCELLED] * 9
    assert s.stats()["lanes"]["realtime"]["queued"] == 2  # one per owner, not 10 + 1
    assert device_b.position() <= 1
    gate.opened.set()
    await asyncio.gather(busy, device_b, talker[-1])
    assert sorted(order) == ["b", "tv9"]  # the superseded jobs never ran
    for handle in talker[:-1]:
        with pytest.raises(JobCancelled, match="superseded"):
            await handle


async def test_a_running_speculation_stops_at_its_next_step_when_superseded(
    make_scheduler: MakeScheduler,
) -> None:
    s = await make_scheduler()
    steps = 0
    running = asyncio.Event()

    async def transcribe_windows(ctx: JobContext) -> str:
        nonlocal steps
        for _ in range(1000):
            steps += 1
            if steps == 3:
                running.set()
            await ctx.checkpoint()
            await asyncio.sleep(0.001)
        return "done"

    spec = JobSpec(kind="asr", owner="device:tv", **SPECULATIVE)  # type: ignore[arg-type]
    first = s.submit(transcribe_windows, spec=spec)
    await running.wait()
    second = s.submit(record, [], "tv-newer", spec=spec)
    with pytest.raises(JobCancelled, match="superseded"):
        await first
    assert await second == "tv-newer"
    assert steps < 20  # stopped at once, did not run its 1000 steps


async def test_supersedes_is_per_owner_and_per_key(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    gate = Gate()
    busy = s.submit(gate, spec=JobSpec(kind="hold", resources={"cpu": 1}))
    await gate.started.wait()
    a = s.submit(record, [], 1, spec=JobSpec(kind="asr", owner="device:a", **SPECULATIVE))  # type: ignore[arg-type]
    b = s.submit(record, [], 2, spec=JobSpec(kind="asr", owner="device:b", **SPECULATIVE))  # type: ignore[arg-type]
    other_key = {**SPECULATIVE, "supersedes": "tts"}
    c = s.submit(record, [], 3, spec=JobSpec(kind="tts", owner="device:a", **other_key))  # type: ignore[arg-type]
    plain = s.submit(record, [], 4, spec=JobSpec(kind="asr", owner="device:a", lane=Lane.REALTIME))
    gate.opened.set()
    assert await asyncio.gather(busy, a, b, c, plain) == ["gate", 1, 2, 3, 4]


async def test_a_long_realtime_job_of_one_owner_yields_to_another_owner_after_its_slice(
    make_scheduler: MakeScheduler,
) -> None:
    """The talker's 30 s utterance is recognised window by window; another device's short
    utterance waits for one window of it, not for all of them."""
    s = await make_scheduler(owner_slice_s=0.05)
    order: list[str] = []
    running = asyncio.Event()

    async def windows(ctx: JobContext, owner: str, n: int) -> str:
        for i in range(n):
            running.set()
            await ctx.checkpoint()
            order.append(f"{owner}{i}")
            await asyncio.sleep(0.02)  # one window of ASR
        return owner

    def spec(owner: str) -> JobSpec:
        return JobSpec(
            kind="asr", lane=Lane.REALTIME, owner=owner, resources={"cpu": 1}, preemptible=True
        )

    talker = s.submit(windows, "tv", 40, spec=spec("device:tv"))
    await running.wait()
    device = s.submit(windows, "b", 2, spec=spec("device:b"))
    assert await device == "b"
    assert await talker == "tv"
    first_b = order.index("b0")
    assert first_b <= 8, order  # a slice (0.05 s) of the talker, not its 40 windows
    assert order.index("b1") == first_b + 1  # b then ran on: its own slice
    assert order[-1] == "tv39"  # and the talker finished


async def test_a_talker_that_used_the_lane_does_not_slice_a_quiet_devices_job(
    make_scheduler: MakeScheduler,
) -> None:
    """Slices go by recent use: the talker (a TV beside a device) has had the REALTIME lane for
    a while, so its next job waits for the quiet device's job instead of pausing it."""
    s = await make_scheduler(owner_slice_s=0.03)
    order: list[str] = []

    async def windows(ctx: JobContext, owner: str, n: int) -> str:
        for i in range(n):
            await ctx.checkpoint()
            order.append(f"{owner}{i}")
            await asyncio.sleep(0.02)
        return owner

    def spec(owner: str) -> JobSpec:
        return JobSpec(
            kind="asr", lane=Lane.REALTIME, owner=owner, resources={"cpu": 1}, preemptible=True
        )

    assert await s.submit(windows, "tv", 25, spec=spec("device:tv")) == "tv"  # ~0.5 s of use
    order.clear()
    quiet = s.submit(windows, "a", 10, spec=spec("device:a"))  # ~0.2 s: several slices long
    await asyncio.sleep(0.05)  # the quiet job has run past its slice
    talker = s.submit(windows, "tv", 3, spec=spec("device:tv"))
    assert await quiet == "a" and await talker == "tv"
    assert order == [*(f"a{i}" for i in range(10)), "tv0", "tv1", "tv2"]  # never paused
