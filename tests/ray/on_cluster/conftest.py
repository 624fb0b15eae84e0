"""A real two-node Ray cluster on loopback, started and stopped by the test session.

Runs only inside ``unshare --net --pid --fork --mount-proc`` (test_ray_cluster.py starts it):
the namespace has nothing but ``lo``, so Ray's node address is 127.0.0.1 and every port it
opens (GCS, raylets, object managers, worker ports 10002-19999) is reachable only here; when
the session ends the namespace's init exits and the kernel kills whatever Ray left.
Token authentication is on (``RAY_AUTH_MODE=token``, a random ``RAY_AUTH_TOKEN``): the head
and the second node get the token from their environment, the front from ``ray.auth_token``.

Nodes: ``head`` (label xiaoyou-node=head, ``vram_mb`` 4000) in this process, and ``gpu1``
(label gpu1, ``vram_mb`` 8000) started with ``ray start --block`` like a real box; each 1 CPU;
the actors reserve no CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Ray reads its token settings once, when its core is imported: set them before any import.
TOKEN = secrets.token_hex(16)
os.environ.update(
    HOME=tempfile.mkdtemp(prefix="ray-home-"),  # nothing of Ray's lands in the real home
    RAY_AUTH_MODE="token",
    RAY_AUTH_TOKEN=TOKEN,
    RAY_USAGE_STATS_ENABLED="0",
)

from core.scheduler import Scheduler, SchedulerSettings  # noqa: E402
from core.workers.base import WorkerSpec  # noqa: E402
from core.workers.ray_pool import RayPool, connect, disconnect  # noqa: E402
from core.workers.ray_settings import RaySettings  # noqa: E402
from tests.ray.standin import StandInSettings, make_standin  # noqa: E402

HEAD_VRAM_MB = 4000
GPU1_VRAM_MB = 8000


@dataclass
class LoopbackCluster:
    """The head in this process (``ray.cluster_utils``), the box ``gpu1`` as its own
    ``ray start --block`` process group: joining and leaving the way a real box does."""

    cluster: Any
    token: str
    gpu1: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_gpu1(self, timeout_s: float = 90.0) -> None:
        """``ray start`` on the box with the cluster's token; returns once the head sees it."""
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.gpu1 = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")), "start", "--block",
                f"--address={self.address}", "--num-cpus=1",
                f"--resources={json.dumps({'vram_mb': GPU1_VRAM_MB})}",
                "--labels=xiaoyou-node=gpu1", "--disable-usage-stats",
            ],
            env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_gpu1(alive=True, timeout_s=timeout_s)

    def remove_gpu1(self, timeout_s: float = 60.0) -> None:
        """The box loses power: SIGKILL to its whole process group (raylet, actors)."""
        proc, self.gpu1 = self.gpu1, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self._wait_gpu1(alive=False, timeout_s=timeout_s)

    def _wait_gpu1(self, *, alive: bool, timeout_s: float) -> None:
        import ray

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            nodes = ray.nodes() if ray.is_initialized() else _nodes_before_connect(self.address)
            up = any(
                n["Alive"] and n.get("Labels", {}).get("xiaoyou-node") == "gpu1" for n in nodes
            )
            if up == alive:
                return
            time.sleep(0.2)
        raise TimeoutError(f"gpu1 {'did not join' if alive else 'still alive'} in {timeout_s} s")

    def settings(self, **overrides: Any) -> RaySettings:
        values: dict[str, Any] = {
            "address": self.address,
            "auth_token": self.token,
            "start_timeout_s": 60.0,
            "call_timeout_s": 10.0,
            "revive_interval_s": 0.5,
            **overrides,
        }
        return RaySettings(**values)


def _nodes_before_connect(address: str) -> list[dict[str, Any]]:
    import ray

    ray.init(address=address, log_to_driver=False)
    try:
        return list(ray.nodes())
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def cluster() -> Iterator[LoopbackCluster]:
    if os.environ.get("XIAOYOU_RAY_CLUSTER") != "1":
        pytest.skip("runs inside the network namespace only")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from ray.cluster_utils import Cluster

    ray_cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"vram_mb": HEAD_VRAM_MB},
            "labels": {"xiaoyou-node": "head"},
            "include_dashboard": False,
        },
    )
    loopback = LoopbackCluster(ray_cluster, TOKEN)
    connect(loopback.settings())  # the front's token comes from ray.auth_token
    try:
        loopback.add_gpu1()
        yield loopback
    finally:
        with contextlib.suppress(TimeoutError):
            loopback.remove_gpu1(timeout_s=5.0)
        disconnect()
        ray_cluster.shutdown()


def standin_spec(model: str, **settings: Any) -> WorkerSpec:
    return WorkerSpec(name=model, factory=make_standin, settings=StandInSettings(**settings))


MakePool = Callable[..., Any]


@pytest.fixture
async def make_pool(cluster: LoopbackCluster) -> AsyncIterator[MakePool]:
    """A started RayPool on a fresh scheduler: ``await make_pool(workers=[...], ...)``."""
    made: list[tuple[RayPool, Scheduler]] = []

    async def make(
        workers: list[dict[str, Any]], *, scheduler: Scheduler | None = None, **ray: Any
    ) -> tuple[RayPool, Scheduler]:
        if scheduler is None:
            scheduler = Scheduler(
                SchedulerSettings(resources={"cpu": 2}, drain_timeout_s=2.0, cancel_timeout_s=2.0)
            )
            await scheduler.start()
        settings = cluster.settings(workers=workers, **ray)
        specs = {w["model"]: standin_spec(w["model"]) for w in workers}
        pool = RayPool(settings, scheduler, specs, connect_cluster=False)
        await pool.start()
        made.append((pool, scheduler))
        return pool, scheduler

    yield make
    for pool, scheduler in reversed(made):
        await scheduler.stop()
        await pool.stop()
