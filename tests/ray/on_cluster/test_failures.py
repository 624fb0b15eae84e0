"""Cancel in the middle of a stream; an actor killed mid-call; a box that leaves and returns."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import pytest

from core.errors import JobCancelled, WorkerDied
from core.models.llm import ChatMessage
from core.scheduler import ExecMode, JobContext, JobHandle, JobSpec, Lane
from core.settings import DeviceSettings
from core.workers.base import WorkerCall
from core.workers.ray_pool import RayPool, worker_resource
from devices.hub import DeviceHub
from devices.simulator import DeviceSimulator
from tests.devices.conftest import serve
from tests.devices.fakes import FakeInference, tone_pcm
from tests.ray.on_cluster.conftest import LoopbackCluster, MakePool
from tests.ray.on_cluster.helpers import stats, submit_generate


async def _until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


async def test_cancel_in_the_middle_of_a_stream_stops_the_actor_within_a_step(
    make_pool: MakePool,
) -> None:
    pool, scheduler = await make_pool([{"name": "cx-gen", "model": "llm"}])
    handle = submit_generate(
        scheduler, pool, "llm", [str(i) for i in range(200)], 0.05, stream_buffer=1
    )
    got: list[str] = []
    async for piece in handle.stream():
        got.append(piece)
        if len(got) == 5:
            handle.cancel("user pressed stop")
            break
    with pytest.raises(JobCancelled):
        await handle.result()
    first = await stats(scheduler, pool, "llm")
    await asyncio.sleep(0.5)  # 10 more steps' worth of time
    second = await stats(scheduler, pool, "llm")
    assert first["steps"] == second["steps"]  # the actor's backend stopped
    # read 5, one buffered, the actor one step ahead and the step in flight: at most ~9
    assert first["steps"] <= 9, first
    again = submit_generate(scheduler, pool, "llm", ["a", "b"], 0.01)
    assert (await again.result()).endswith(f" {first['pid']}")  # same actor serves the next
    assert scheduler.stats()["resources"][worker_resource("cx-gen")]["used"] == 0


async def test_a_killed_actor_fails_its_job_and_the_restarted_one_serves_the_next(
    make_pool: MakePool,
) -> None:
    pool, scheduler = await make_pool([{"name": "kill-gen", "model": "llm"}])
    (replica,) = pool.replicas("llm")
    pid_before = replica.pid
    assert pid_before is not None
    handle = submit_generate(scheduler, pool, "llm", [str(i) for i in range(100)], 0.05)
    stream = handle.stream().__aiter__()
    for _ in range(3):
        await stream.__anext__()
    os.kill(pid_before, signal.SIGKILL)  # a native crash of the model process
    with pytest.raises(WorkerDied) as died:
        await handle.result()
    assert died.value.retryable
    (row,) = _replicas(pool)  # the operators' view: not alive, and why
    assert row["state"] in ("dead", "restarting") and not row["live"], row
    assert "died during a call" in row["last_error"], row
    assert any("kill-gen" in p for p in pool.problems())
    # Ray restarts the actor, the pool loads the model again and returns the slot
    await _until(lambda: replica.pid != pid_before and replica.name in _live(pool), 60, "revived")
    result = await submit_generate(scheduler, pool, "llm", ["a"], 0.01).result()
    assert result.endswith(f" {replica.pid}")
    assert replica.starts == 2
    assert (await stats(scheduler, pool, "llm"))["loads"] == 1  # loaded again after the restart
    (row,) = _replicas(pool)
    assert row["state"] == "alive" and row["starts"] == 2 and row["running_jobs"] == [], row
    assert pool.problems() == []


async def test_an_actor_that_dies_while_idle_is_back_before_the_next_job(
    make_pool: MakePool,
) -> None:
    """The pool's health ping notices the death, Ray restarts the actor, the model is loaded
    again: the next job is served without a WorkerDied."""
    pool, scheduler = await make_pool([{"name": "idle-gen", "model": "llm"}])
    (replica,) = pool.replicas("llm")
    pid_before = replica.pid
    assert pid_before is not None
    os.kill(pid_before, signal.SIGKILL)
    await _until(lambda: replica.pid != pid_before and replica.name in _live(pool), 60, "revived")
    result = await submit_generate(scheduler, pool, "llm", ["a"], 0.01).result()
    assert result.endswith(f" {replica.pid}")
    assert (await stats(scheduler, pool, "llm"))["loads"] == 1


def _replicas(pool: RayPool) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = pool.snapshot()["models"]  # type: ignore[assignment]
    return [row for model in models for row in model["replicas"]]


def _live(pool: RayPool) -> set[str]:
    return {row["worker"] for row in _replicas(pool) if row["live"]}


class RayChat(FakeInference):
    """The device pipeline's inference double with its LLM on the Ray cluster (the rest, VAD,
    ASR and TTS, are the local fakes of tests/devices)."""

    pool: RayPool | None = None

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        lane: Lane,
        owner: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream_buffer: int | None = None,
        max_sentences: int | None = None,
    ) -> JobHandle[str]:
        pool = self.pool
        assert pool is not None

        async def run(ctx: JobContext) -> None:
            await pool.call(ctx, "llm", WorkerCall("llm", "reply", stream=True))

        spec = JobSpec(
            kind="llm",
            lane=lane,
            owner=owner,
            mode=ExecMode.ASYNC,
            resources=pool.job_resources("llm", lane),
            stream_buffer=stream_buffer,
        )
        return self.scheduler.submit(run, spec=spec)


async def test_the_front_keeps_serving_devices_while_a_worker_box_goes_away_and_comes_back(
    make_pool: MakePool, cluster: LoopbackCluster
) -> None:
    from fastapi import FastAPI

    pool, scheduler = await make_pool([{"name": "dev-llm", "model": "llm", "node": "gpu1"}])
    inference = RayChat(scheduler)
    inference.pool = pool
    hub = DeviceHub(DeviceSettings(), inference, scheduler)
    app = FastAPI()
    app.include_router(hub.router())
    sims: list[DeviceSimulator] = []
    async with serve(app) as port:
        url = f"ws://127.0.0.1:{port}{hub.settings.ws_path}"
        try:
            first = DeviceSimulator(url)
            sims.append(first)
            await first.connect()
            turn = await first.converse(tone_pcm(0.4), mode="manual", speed=4.0, timeout_s=30)
            assert "节点gpu1" in "".join(turn.sentences), turn.sentences

            lag_probe = _LagProbe()
            probe = asyncio.get_running_loop().create_task(lag_probe.run(), name="lag-probe")
            assert pool.health()["status"] == "ok"
            await pool.refresh_nodes()
            boxes = {n["box"]: n for n in pool.snapshot()["nodes"]}  # type: ignore[attr-defined]
            assert boxes["gpu1"]["alive"] and boxes["gpu1"]["actors"] == ["xiaoyou-dev-llm-0"]
            assert boxes["gpu1"]["resources"]["vram_mb"] == 8000
            await asyncio.get_running_loop().run_in_executor(None, cluster.remove_gpu1)
            await pool.refresh_nodes()
            health = pool.health()  # the operators see the lost box
            assert health["status"] == "degraded", health
            assert any("'gpu1' lost" in p for p in health["problems"]), health  # type: ignore[attr-defined]
            # the box is gone: a new device connects and talks; its turn ends (no reply from
            # the box, a spoken/sent error) instead of hanging, and the first device is served
            second = DeviceSimulator(url)
            sims.append(second)
            await second.connect()
            started = time.monotonic()
            await second.converse(tone_pcm(0.4), mode="manual", speed=4.0, timeout_s=30)
            assert time.monotonic() - started < 20
            await first.converse(tone_pcm(0.4), mode="manual", speed=4.0, timeout_s=30)

            await asyncio.get_running_loop().run_in_executor(None, cluster.add_gpu1)
            (replica,) = pool.replicas("llm")
            await _until(lambda: replica.name in _live(pool), 90, "the worker back on gpu1")
            await pool.refresh_nodes()
            assert pool.health()["status"] == "ok", pool.health()
            turn = await first.converse(tone_pcm(0.4), mode="manual", speed=4.0, timeout_s=30)
            assert "节点gpu1" in "".join(turn.sentences), turn.sentences
            turn = await second.converse(tone_pcm(0.4), mode="manual", speed=4.0, timeout_s=30)
            assert "节点gpu1" in "".join(turn.sentences), turn.sentences
            probe.cancel()
            # the loop stayed responsive while Ray lost and regained the box
            assert lag_probe.worst_s < 0.5, lag_probe.worst_s
        finally:
            for sim in sims:
                await sim.close()
            await hub.close()


class _LagProbe:
    def __init__(self) -> None:
        self.worst_s = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            self.worst_s = max(self.worst_s, loop.time() - before - 0.05)
