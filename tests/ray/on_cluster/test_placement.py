"""Placement by custom resources and node labels; the scheduler's view of remote capacity."""

from __future__ import annotations

import subprocess
import sys

from core.scheduler import ExecMode, JobSpec
from tests.ray.on_cluster.conftest import LoopbackCluster, MakePool
from tests.ray.on_cluster.helpers import generate_job as _job


async def test_a_job_lands_on_the_node_whose_resources_fit(make_pool: MakePool) -> None:
    """6000 MB fit only gpu1 (8000; the head has 4000); 3000 MB pinned to the head stay there."""
    pool, scheduler = await make_pool(
        [
            {"name": "place-big", "model": "vl", "vram_mb": 6000},
            {"name": "place-small", "model": "sd", "vram_mb": 3000, "node": "head"},
        ]
    )
    big = scheduler.submit(
        _job(pool, "vl", ["a"]),
        spec=JobSpec(kind="vl", mode=ExecMode.ASYNC, resources=pool.job_resources("vl")),
    )
    small = scheduler.submit(
        _job(pool, "sd", ["b"]),
        spec=JobSpec(kind="sd", mode=ExecMode.ASYNC, resources=pool.job_resources("sd")),
    )
    assert (await big.result()).startswith("gpu1 ")
    assert (await small.result()).startswith("head ")
    used = scheduler.stats()["resources"]
    assert used["worker:place-big"]["budget"] == 1
    assert used["ray-node:head"]["budget"] == 1


def test_a_front_with_a_wrong_token_is_refused(cluster: LoopbackCluster) -> None:
    """Token authentication is on: the nodes joined with the cluster's token; a driver without
    it cannot connect."""
    code = (
        "import os, ray; os.environ['RAY_AUTH_MODE'] = 'token';"
        " os.environ['RAY_AUTH_TOKEN'] = '0' * 32;"
        f" ray.init(address='{cluster.address}', log_to_driver=False); print('connected')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "connected" not in proc.stdout
    assert proc.returncode != 0
    assert "auth" in (proc.stderr + proc.stdout).lower()
