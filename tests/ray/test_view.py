"""What operators see of the Ray pool, without a cluster: the node table (as ``ray.nodes()``
returns it), lost boxes, replica states, problems and the /admin routes that show them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from core.scheduler import Scheduler
from core.workers.base import WorkerSpec, WorkerState
from core.workers.ray_pool import RayPool, _Group
from core.workers.ray_settings import RaySettings
from core.workers.ray_view import BoxBook, NodeView, replica_state
from tests.admin.conftest import AUTH, make_app, make_services
from tests.ray.standin import StandInSettings, make_standin


def ray_node(node_id: str, box: str | None, *, alive: bool = True) -> dict[str, object]:
    """One row of ``ray.nodes()`` (Ray 2.60's keys)."""
    labels = {"ray.io/node-id": node_id}
    if box is not None:
        labels["xiaoyou-node"] = box
    return {
        "NodeID": node_id,
        "Alive": alive,
        "NodeManagerAddress": "192.168.1.21",
        "Labels": labels,
        "Resources": {
            "CPU": 4.0,
            "GPU": 1.0,
            "vram_mb": 8000.0,
            "memory": 2.5e9,
            "node:192.168.1.21": 1.0,
        },
    }


def test_a_node_row_keeps_what_operators_read() -> None:
    node = NodeView.from_ray(ray_node("n1", "gpu1"))
    assert node.box == "gpu1" and node.alive and node.address == "192.168.1.21"
    assert node.labels == {"xiaoyou-node": "gpu1"}  # Ray's own ray.io/* labels left out
    assert node.resources == {"CPU": 4.0, "GPU": 1.0, "vram_mb": 8000.0, "memory_mb": 2500.0}
    assert NodeView.from_ray(ray_node("n2", None)).box == "192.168.1.21"  # unlabelled: address


def test_a_box_seen_alive_that_has_no_alive_node_is_lost_until_it_joins_again() -> None:
    book = BoxBook()
    book.update(
        [NodeView.from_ray(ray_node("head", "head")), NodeView.from_ray(ray_node("a", "gpu1"))]
    )
    assert book.lost_boxes() == []
    dead_a = NodeView.from_ray(ray_node("a", "gpu1", alive=False))
    book.update([NodeView.from_ray(ray_node("head", "head")), dead_a])
    assert book.lost_boxes() == ["gpu1"]
    assert [(n.node_id, n.alive) for n in book.shown_nodes()] == [("head", True), ("a", False)]
    # the operator starts the box again: a new Ray node id, same box
    back = NodeView.from_ray(ray_node("b", "gpu1"))
    book.update([NodeView.from_ray(ray_node("head", "head")), dead_a, back])
    assert book.lost_boxes() == []
    assert [n.node_id for n in book.shown_nodes()] == ["head", "b"]  # the old dead one hidden
    # a dead node never seen alive by this front (an old entry in Ray's table) is no loss
    fresh = BoxBook()
    fresh.update([NodeView.from_ray(ray_node("old", "gpu2", alive=False))])
    assert fresh.lost_boxes() == [] and fresh.shown_nodes() == []


def test_replica_states_as_operators_read_them() -> None:
    assert replica_state(WorkerState.IDLE, 1) == replica_state(WorkerState.BUSY, 1) == "alive"
    assert replica_state(WorkerState.STARTING, 0) == "starting"
    assert replica_state(WorkerState.STARTING, 2) == "restarting"
    assert replica_state(WorkerState.DEAD, 1) == "dead"
    assert replica_state(WorkerState.STOPPED, 1) == "stopped"


@dataclass
class FakeReplica:
    """Test double of RayWorker: the fields the pool's view reads."""

    name: str
    state: WorkerState = WorkerState.IDLE
    node_id: str | None = "a"
    pid: int | None = 4242
    starts: int = 1
    last_error: str | None = None
    last_error_at: float | None = None

    async def start(self) -> None:
        self.state = WorkerState.IDLE


def pool_with(scheduler: Scheduler, replicas: list[FakeReplica]) -> RayPool:
    settings = RaySettings.model_validate(
        {
            "address": "192.168.1.10:6379",
            "workers": [
                {"name": "chat", "model": "llm", "node": "gpu1", "vram_mb": 6000, "replicas": 2}
            ],
        }
    )
    spec = WorkerSpec("llm", make_standin, StandInSettings())
    pool = RayPool(settings, scheduler, {"llm": spec}, connect_cluster=False)
    group = _Group(
        settings.workers[0],
        replicas,  # type: ignore[arg-type]
        {r.name: [] for r in replicas},
        {r.name for r in replicas if r.state in (WorkerState.IDLE, WorkerState.BUSY)},
    )
    pool._groups["llm"] = group
    return pool


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    from tests.admin.conftest import scheduler_settings

    sched = Scheduler(scheduler_settings())
    await sched.start()
    try:
        yield sched
    finally:
        await sched.stop()


async def test_admin_workers_shows_boxes_actors_and_replicas_and_health_says_why(
    scheduler: Scheduler,
) -> None:
    a = FakeReplica("xiaoyou-chat-0")
    b = FakeReplica("xiaoyou-chat-1")
    pool = pool_with(scheduler, [a, b])
    pool._groups["llm"].jobs[a.name].append(17)  # a job running on replica 0
    pool._boxes.update([NodeView.from_ray(ray_node("a", "gpu1"))])
    services = make_services(scheduler)
    services.cluster = pool
    transport = httpx.ASGITransport(app=make_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        assert (await client.get("/admin/workers")).status_code == 401
        view = (await client.get("/admin/workers", headers=AUTH)).json()
        assert view["process"] == []
        ray = view["ray"]
        (node,) = ray["nodes"]
        assert node["box"] == "gpu1" and node["alive"] and node["resources"]["vram_mb"] == 8000
        assert node["actors"] == [a.name, b.name]
        assert node["reserved"] == {"vram_mb": 12000.0}  # two replicas of 6000 MB
        (model,) = ray["models"]
        assert (model["model"], model["worker"], model["live"]) == ("llm", "chat", 2)
        rows = {r["worker"]: r for r in model["replicas"]}
        assert rows[a.name]["state"] == "alive" and rows[a.name]["running_jobs"] == [17]
        assert rows[a.name]["box"] == "gpu1"
        health = (await client.get("/admin/health", headers=AUTH)).json()
        assert health["status"] == "ok" and health["ray"]["replicas_live"] == 2
        stats = (await client.get("/admin/stats", headers=AUTH)).json()
        assert stats["ray"]["status"] == "ok"

        # the box loses power: Ray marks its node dead, the replicas die with it
        pool._boxes.update([NodeView.from_ray(ray_node("a", "gpu1", alive=False))])
        for replica in (a, b):
            replica.state = WorkerState.DEAD
            replica.last_error, replica.last_error_at = "died during a call: X", time.time()
            pool._lost(pool._groups["llm"], replica)  # type: ignore[arg-type]
        health = (await client.get("/admin/health", headers=AUTH)).json()
        assert health["status"] == "degraded"
        assert "ray box 'gpu1' lost (no alive Ray node)" in health["reasons"]
        assert any(a.name in r and "dead" in r for r in health["reasons"]), health["reasons"]
        view = (await client.get("/admin/workers", headers=AUTH)).json()["ray"]
        assert view["lost_boxes"] == ["gpu1"]
        assert [n["alive"] for n in view["nodes"]] == [False]
        row = view["models"][0]["replicas"][0]
        assert row["state"] == "dead" and row["last_error"] == "died during a call: X"
        assert (await client.get("/admin/stats", headers=AUTH)).json()["ray"]["status"] == (
            "degraded"
        )

        # Ray restarts an actor: "restarting" until it is loaded again
        a.state, a.starts = WorkerState.STARTING, 1
        view = (await client.get("/admin/workers", headers=AUTH)).json()["ray"]
        assert view["models"][0]["replicas"][0]["state"] == "restarting"


async def test_admin_workers_in_single_box_mode_has_no_ray_section(scheduler: Scheduler) -> None:
    services = make_services(scheduler)
    transport = httpx.ASGITransport(app=make_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        view = (await client.get("/admin/workers", headers=AUTH)).json()
        assert view == {"process": [], "ray": None}
        health = (await client.get("/admin/health", headers=AUTH)).json()
        assert "ray" not in health and health["reasons"] == []
        assert "ray" not in (await client.get("/admin/stats", headers=AUTH)).json()


async def test_admin_workers_lists_the_process_placed_models(scheduler: Scheduler) -> None:
    from types import SimpleNamespace

    from core.workers.hosted import WorkerModel
    from core.workers.process import ProcessWorker

    services = make_services(scheduler)
    models = services.models
    worker = WorkerModel(
        ProcessWorker(WorkerSpec("llm", make_standin, StandInSettings())), stop_timeout_s=1.0
    )
    models.entries["llm"]["placement"] = "process"  # type: ignore[attr-defined]
    models.entry = lambda name: SimpleNamespace(backend=worker)  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=make_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        (row,) = (await client.get("/admin/workers", headers=AUTH)).json()["process"]
    assert row["model"] == "llm" and row["state"] == "new" and row["starts"] == 0
    assert row["pid"] is None and row["restarts"] == 0
