"""Counted resources: budgets are never exceeded, the VRAM mutex, unsatisfiable needs."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ResourceUnsatisfiable
from core.scheduler import JobContext, JobSpec, JobStatus, Lane, Scheduler, SchedulerSettings

from .conftest import MakeScheduler
from .helpers import Gate, noop, record


class Meter:
    """Tracks what running jobs hold, to check the budget from the jobs' point of view."""

    def __init__(self) -> None:
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.intervals: list[tuple[str, float, float]] = []

    async def job(self, ctx: JobContext, needs: dict[str, int], hold_s: float, tag: str) -> None:
        loop = asyncio.get_running_loop()
        for k, v in needs.items():
            self.now[k] = self.now.get(k, 0) + v
            self.peak[k] = max(self.peak.get(k, 0), self.now[k])
        start = loop.time()
        try:
            await asyncio.sleep(hold_s)
        finally:
            for k, v in needs.items():
                self.now[k] -= v
            self.intervals.append((tag, start, loop.time()))


async def test_two_6gb_jobs_on_an_8gb_budget_never_overlap(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(resources={"vram:0": 8192})
    meter = Meter()
    needs = {"vram:0": 6144}
    handles = [
        s.submit(meter.job, needs, 0.02, name, spec=JobSpec(kind=name, lane=lane, resources=needs))
        for name, lane in (
            ("sd", Lane.BACKGROUND),
            ("llm", Lane.INTERACTIVE),
            ("vl", Lane.INTERACTIVE),
        )
    ]
    await asyncio.gather(*(h.result() for h in handles))
    assert meter.peak["vram:0"] == 6144
    spans = sorted((a, b) for _, a, b in meter.intervals)
    assert all(prev_end <= start for (_, prev_end), (start, _) in itertools.pairwise(spans))


async def test_small_jobs_share_what_fits(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(resources={"vram:0": 8192})
    meter = Meter()
    needs = {"vram:0": 2048}
    handles = [
        s.submit(meter.job, needs, 0.05, str(i), spec=JobSpec(kind="x", resources=needs))
        for i in range(8)
    ]
    await asyncio.gather(*(h.result() for h in handles))
    assert meter.peak["vram:0"] == 8192  # four at a time: the budget is used, never exceeded


async def test_unknown_or_oversized_resources_are_refused(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler(resources={"vram:0": 8192})
    with pytest.raises(ResourceUnsatisfiable, match="unknown resource 'vram:1'"):
        s.submit(Meter().job, {}, 0, "x", spec=JobSpec(kind="x", resources={"vram:1": 1}))
    with pytest.raises(ResourceUnsatisfiable, match="budget is 8192"):
        s.submit(Meter().job, {}, 0, "x", spec=JobSpec(kind="x", resources={"vram:0": 9000}))
    assert s.stats()["lanes"]["interactive"]["rejected"] == 2


async def _random_workload(seed: int, budget: dict[str, int], n_jobs: int) -> Meter:
    rng = random.Random(seed)
    s = Scheduler(SchedulerSettings(resources=budget, thread_workers=1, prewarm=False))
    await s.start()
    meter = Meter()
    handles = []
    for i in range(n_jobs):
        needs = {k: rng.randint(0, v) for k, v in budget.items() if rng.random() < 0.7}
        lane = rng.choice(list(Lane))
        handles.append(
            s.submit(
                meter.job,
                needs,
                rng.choice([0, 0.001, 0.003]),
                str(i),
                spec=JobSpec(kind="p", lane=lane, owner=f"o{rng.randint(0, 3)}", resources=needs),
            )
        )
        if rng.random() < 0.1:
            handles[rng.randrange(len(handles))].cancel()
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
    await s.stop()
    assert s.stats()["queued_total"] == 0
    assert all(v["used"] == 0 for v in s.stats()["resources"].values())
    return meter


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    vram=st.integers(1, 16_000),
    cpu=st.integers(1, 4),
    n_jobs=st.integers(1, 40),
)
def test_budget_is_never_exceeded(seed: int, vram: int, cpu: int, n_jobs: int) -> None:
    budget = {"vram:0": vram, "cpu": cpu}
    meter = asyncio.run(_random_workload(seed, budget, n_jobs))
    for name, peak in meter.peak.items():
        assert peak <= budget[name]
    assert all(v == 0 for v in meter.now.values())


async def test_a_finished_job_hands_its_resources_on_and_the_next_head_still_starts(
    make_scheduler: MakeScheduler,
) -> None:
    """A finish hands {cpu} straight to the next job needing exactly that (no pass); the same
    owner's following job, needing no cpu, becomes a head then and must start too."""
    s = await make_scheduler(resources={"cpu": 1})
    first, second = Gate(), Gate()
    cpu = {"cpu": 1}
    running = s.submit(first, spec=JobSpec(kind="x", owner="x", resources=cpu))
    await first.started.wait()
    needs_cpu = s.submit(second, spec=JobSpec(kind="a1", owner="a", resources=cpu))
    light = s.submit(noop, spec=JobSpec(kind="a2", owner="a"))  # FIFO: waits behind a1
    await asyncio.sleep(0)
    assert s.position(light) == 1
    first.opened.set()
    await running
    await second.started.wait()
    assert await asyncio.wait_for(light.result(), 1.0) is None  # started while a1 still runs
    assert needs_cpu.status is JobStatus.RUNNING
    second.opened.set()
    await needs_cpu


async def test_a_budget_raised_at_run_time_starts_the_queued_jobs_that_now_fit(
    make_scheduler: MakeScheduler,
) -> None:
    """A Ray worker lost and back: its ``worker:`` budget drops to 0 and returns while a job
    waits; nothing else happens, yet the waiting job starts (before: it waited forever)."""
    s = await make_scheduler()
    s.define_resource("worker:llm", 1)
    gate = Gate()
    first = s.submit(gate, spec=JobSpec(kind="llm", resources={"worker:llm": 1}))
    await gate.started.wait()
    log: list[str] = []
    waiting = s.submit(record, log, "next", spec=JobSpec(kind="llm", resources={"worker:llm": 1}))
    s.define_resource("worker:llm", 0)  # the replica is lost
    gate.opened.set()
    await first.result()
    await asyncio.sleep(0.05)
    assert log == []  # nothing fits a budget of 0
    s.define_resource("worker:llm", 1)  # the replica is back
    assert await asyncio.wait_for(waiting.result(), 2.0) == "next"
