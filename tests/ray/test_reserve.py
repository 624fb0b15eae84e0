"""``background_replicas``: BACKGROUND jobs on a Ray worker hold at most that many replicas,
the rest stay free for REALTIME and INTERACTIVE jobs (no cluster: the scheduler's resources)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.scheduler import Lane, Scheduler, SchedulerSettings
from core.workers.base import WorkerSpec
from core.workers.ray_pool import RayPool, _Group, background_resource, worker_resource
from core.workers.ray_settings import RaySettings
from tests.ray.standin import StandInSettings, make_standin
from tests.ray.test_view import FakeReplica


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    sched = Scheduler(SchedulerSettings(resources={"cpu": 2}, prewarm=False))
    await sched.start()
    try:
        yield sched
    finally:
        await sched.stop()


def pool(scheduler: Scheduler, background_replicas: int | None) -> RayPool:
    worker = {"name": "chat", "model": "llm", "replicas": 2}
    if background_replicas is not None:
        worker["background_replicas"] = background_replicas
    settings = RaySettings.model_validate({"address": "h:6379", "workers": [worker]})
    spec = WorkerSpec("llm", make_standin, StandInSettings())
    made = RayPool(settings, scheduler, {"llm": spec}, connect_cluster=False)
    replicas = [FakeReplica("xiaoyou-chat-0"), FakeReplica("xiaoyou-chat-1")]
    made._groups["llm"] = _Group(
        settings.workers[0],
        replicas,  # type: ignore[arg-type]
        {r.name: [] for r in replicas},
        set(),
    )
    return made


async def test_background_jobs_hold_at_most_background_replicas(scheduler: Scheduler) -> None:
    reserved = pool(scheduler, 1)
    assert reserved.job_resources("llm", Lane.BACKGROUND) == {
        worker_resource("chat"): 1,
        background_resource("chat"): 1,
    }
    assert reserved.job_resources("llm", Lane.REALTIME) == {worker_resource("chat"): 1}
    assert reserved.job_resources("llm", Lane.INTERACTIVE) == {worker_resource("chat"): 1}
    assert background_resource("chat") in reserved.kept_while_paused("llm")
    group = reserved._groups["llm"]
    for replica in group.replicas:
        await reserved._revive(group, replica)  # type: ignore[arg-type]
    resources = scheduler.stats()["resources"]
    assert resources[worker_resource("chat")]["budget"] == 2
    assert resources[background_resource("chat")]["budget"] == 1
    # one replica lost: background work may still use the one left
    reserved._lost(group, group.replicas[1])  # type: ignore[arg-type]
    resources = scheduler.stats()["resources"]
    assert resources[worker_resource("chat")]["budget"] == 1
    assert resources[background_resource("chat")]["budget"] == 1


async def test_without_background_replicas_every_lane_shares_every_replica(
    scheduler: Scheduler,
) -> None:
    shared = pool(scheduler, None)
    assert shared.job_resources("llm", Lane.BACKGROUND) == {worker_resource("chat"): 1}
    assert shared.job_resources("llm") == {worker_resource("chat"): 1}
    group = shared._groups["llm"]
    await shared._revive(group, group.replicas[0])  # type: ignore[arg-type]
    assert background_resource("chat") not in scheduler.stats()["resources"]
