"""Priority lanes, fairness across owners, the starvation bound and queue positions."""

from __future__ import annotations

import asyncio
from typing import Any

from core.scheduler import JobSpec, Lane

from .conftest import MakeScheduler
from .helpers import Gate, record


def spec(lane: Lane, owner: str = "o", kind: str = "t") -> JobSpec:
    return JobSpec(kind=kind, lane=lane, owner=owner, resources={"cpu": 1})


async def test_higher_lanes_run_first(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    gate = Gate()
    blocker = s.submit(gate, spec=spec(Lane.BACKGROUND))
    await gate.started.wait()
    log: list[Any] = []
    handles = [
        s.submit(record, log, lane.name, spec=spec(lane))
        for lane in (Lane.BACKGROUND, Lane.INTERACTIVE, Lane.REALTIME)
    ]
    gate.opened.set()
    await asyncio.gather(blocker.result(), *(h.result() for h in handles))
    assert log == ["REALTIME", "INTERACTIVE", "BACKGROUND"]


async def test_fifo_within_an_owner(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    gate = Gate()
    blocker = s.submit(gate, spec=spec(Lane.INTERACTIVE))
    await gate.started.wait()
    log: list[Any] = []
    handles = [s.submit(record, log, i, spec=spec(Lane.INTERACTIVE)) for i in range(20)]
    gate.opened.set()
    await asyncio.gather(blocker.result(), *(h.result() for h in handles))
    assert log == list(range(20))


async def test_one_owner_cannot_push_another_back(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    gate = Gate()
    blocker = s.submit(gate, spec=spec(Lane.BACKGROUND, owner="g0"))
    await gate.started.wait()
    log: list[Any] = []
    flood = [
        s.submit(record, log, ("g1", i), spec=spec(Lane.BACKGROUND, owner="qq:group:1"))
        for i in range(50)
    ]
    single = s.submit(record, log, ("g2", 0), spec=spec(Lane.BACKGROUND, owner="qq:group:2"))
    assert s.position(single) == 1  # one of group 1's draws, then group 2's
    assert s.position(flood[-1]) == 50
    gate.opened.set()
    await asyncio.gather(blocker.result(), single.result(), *(h.result() for h in flood))
    assert log.index(("g2", 0)) == 1
    assert [t for t in log if t[0] == "g1"] == [("g1", i) for i in range(50)]


async def test_round_robin_across_three_owners(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    gate = Gate()
    blocker = s.submit(gate, spec=spec(Lane.INTERACTIVE, owner="x"))
    await gate.started.wait()
    log: list[Any] = []
    handles = [
        s.submit(record, log, (o, i), spec=spec(Lane.INTERACTIVE, owner=o))
        for o in "abc"
        for i in range(3)
    ]
    gate.opened.set()
    await asyncio.gather(blocker.result(), *(h.result() for h in handles))
    assert [o for o, _ in log] == list("abcabcabc")


async def test_position_counts_higher_lanes(make_scheduler: MakeScheduler) -> None:
    s = await make_scheduler()
    gate = Gate()
    blocker = s.submit(gate, spec=spec(Lane.INTERACTIVE))
    await gate.started.wait()
    log: list[Any] = []
    bg = s.submit(record, log, "bg", spec=spec(Lane.BACKGROUND))
    rts = [s.submit(record, log, "rt", spec=spec(Lane.REALTIME)) for _ in range(3)]
    assert s.position(bg) == 3
    assert s.position(rts[0]) == 0 and s.position(rts[2]) == 2
    assert s.position(blocker) == 0  # running
    gate.opened.set()
    await asyncio.gather(blocker.result(), bg.result(), *(h.result() for h in rts))
    assert s.position(bg) == -1


async def test_starvation_bound_for_lower_lanes(make_scheduler: MakeScheduler) -> None:
    """With REALTIME work always waiting, a BACKGROUND job still starts after at most
    ``starvation_bound`` REALTIME dispatches (and INTERACTIVE likewise)."""
    bound = 4
    s = await make_scheduler(starvation_bound=bound)
    gate = Gate()
    blocker = s.submit(gate, spec=spec(Lane.REALTIME))
    await gate.started.wait()
    log: list[Any] = []
    bg = s.submit(record, log, "bg", spec=spec(Lane.BACKGROUND))
    rts = [s.submit(record, log, "rt", spec=spec(Lane.REALTIME)) for _ in range(30)]
    gate.opened.set()
    await asyncio.gather(blocker.result(), bg.result(), *(h.result() for h in rts))
    # the blocker's own dispatch happened before bg was queued; bg waits <= bound RT dispatches
    assert log.index("bg") <= bound
    assert log.count("rt") == 30


async def test_a_starved_lane_that_cannot_start_never_blocks_realtime(
    make_scheduler: MakeScheduler,
) -> None:
    """Regression: a promoted BACKGROUND lane whose heads don't fit must not stop the
    REALTIME lane from being dispatched."""
    s = await make_scheduler(resources={"vram:0": 8192, "cpu": 2}, starvation_bound=2)
    gate = Gate()
    vram = {"vram:0": 6144}
    image = s.submit(gate, spec=JobSpec(kind="sd", lane=Lane.BACKGROUND, resources=vram))
    await gate.started.wait()
    queued = [
        s.submit(gate, spec=JobSpec(kind="sd", lane=Lane.BACKGROUND, owner=f"g{i}", resources=vram))
        for i in range(20)
    ]
    log: list[Any] = []
    for i in range(10):  # well past the starvation bound
        await asyncio.wait_for(s.submit(record, log, i, spec=spec(Lane.REALTIME)).result(), 5)
    assert log == list(range(10))
    for h in queued:
        h.cancel()
    gate.opened.set()
    await image
