"""VRAM residency for models placed in worker processes (vl and sd by default), as for inline
ones: the weights are reserved on the ledger before the worker loads them, a load that does not
fit waits (its position visible) or evicts idle models LRU (killing their worker), each job
holds its working memory, and a paused worker model is offloaded in its worker (the move
crosses the process boundary) when a REALTIME model needs the room. (Before: a worker model
loaded past the budget with a warning, no working memory, no waiting, no offload.)

One test drives a real :class:`core.workers.process.ProcessWorker` hosting a test double
(tests/workers/doubles.py ``GpuSteps``); the random mixes use the soak's thread worker double
(bench/gpu_sim.py ``ThreadWorker``) with stand-ins allocating on a SimulatedGpu."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.gpu_sim import SimShape, ThreadWorker, sim_factories, sim_models_settings, soak
from core.errors import XiaoyouError
from core.models import registry
from core.models.gpu_memory import SimulatedGpu
from core.models.inference import Inference
from core.models.llm import ChatMessage
from core.models.manager import ModelManager
from core.models.sd import DrawRequest
from core.scheduler import Lane, Scheduler, SchedulerSettings
from core.workers.base import WorkerState
from core.workers.hosted import WorkerModel
from tests.polling import until
from tests.workers.doubles import create_gpu_steps

HELLO = [ChatMessage("user", "你好")]


@pytest.fixture
async def small_card() -> AsyncIterator[tuple[Scheduler, SimulatedGpu]]:
    """A 1000 MB card, budget 1000 MB."""
    sched = Scheduler(
        SchedulerSettings(
            resources={"cpu": 2, "vram:0": 1000},
            thread_workers=16,
            prewarm=False,
            drain_timeout_s=5.0,
            cancel_timeout_s=2.0,
        )
    )
    await sched.start()
    try:
        yield sched, SimulatedGpu(1000)
    finally:
        await sched.stop()


_until = functools.partial(until, timeout_s=10.0, poll_s=0.005)


async def _chat(inference: Inference, lane: Lane, owner: str, tokens: int) -> str:
    handle = inference.chat(HELLO, lane=lane, owner=owner, max_tokens=tokens)
    return "".join([piece async for piece in handle.stream()])


def _real_worker_stack(
    sched: Scheduler, gpu: SimulatedGpu, monkeypatch: pytest.MonkeyPatch, compute_slots: int
) -> tuple[ModelManager, Inference]:
    """SD (500 MB: the double) in a real worker process, an inline LLM of 600 MB."""
    monkeypatch.setitem(registry.WORKER_FACTORIES, "sd", create_gpu_steps)
    shape = SimShape(llm_mb=600, sd_mb=500, working=(("sd", 100), ("llm", 50)), token_s=0.01)
    models = sim_models_settings(shape, "process").model_copy(
        update={"gpu_compute_slots": compute_slots, "vram_wait_timeout_s": 8.0}
    )
    factories = {k: v for k, v in sim_factories(gpu, shape).items() if k != "sd"}
    manager = ModelManager(models, sched, Path("unused"), factories=factories, gpus={"cuda:0": gpu})
    return manager, Inference(sched, manager, models)


async def test_a_real_worker_model_load_past_the_budget_waits_then_evicts_lru(
    small_card: tuple[Scheduler, SimulatedGpu], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a chat holds the LLM (600 MB) of a 1000 MB card, loading SD (500 MB) in its
    worker waits with its position and no worker is started; once the LLM is idle it is
    evicted (LRU) and SD loads in another process."""
    sched, gpu = small_card
    manager, inference = _real_worker_stack(sched, gpu, monkeypatch, compute_slots=2)
    try:
        assert manager.in_worker("sd") and not manager.in_worker("llm")
        worker = manager.backend("sd", WorkerModel).worker
        chat = asyncio.ensure_future(_chat(inference, Lane.INTERACTIVE, "qq:1", 60))
        await _until(lambda: "llm" in manager.vram()["cuda:0"]["weights_mb"])  # type: ignore[operator]
        load = asyncio.ensure_future(manager.load("sd", owner="qq:2"))
        await _until(lambda: manager.vram()["cuda:0"]["waiting"] or load.done())
        assert manager.vram()["cuda:0"]["waiting"] == [
            {"position": 1, "model": "sd", "need_mb": 500}
        ]
        assert worker.state is WorkerState.NEW and not chat.done()  # nothing past the budget
        await load
        assert (await chat).startswith("t0 ")
        row = manager.vram()["cuda:0"]
        assert row["weights_mb"] == {"sd": 500} and row["evictions"] == 1  # the idle LLM
        assert int(str(row["peak_mb"])) <= 1000
        assert worker.state is WorkerState.IDLE and worker.pid not in (None, os.getpid())
    finally:
        await manager.close()
    assert worker.state is WorkerState.STOPPED


async def test_a_paused_drawing_in_a_real_worker_is_offloaded_there_for_a_voice_model(
    small_card: tuple[Scheduler, SimulatedGpu], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drawing in the SD worker holds its working memory; a REALTIME chat preempts it and
    its LLM needs the room: the paused pipeline moves to host memory inside the worker (at
    the step it waits at), the LLM loads, and the weights come back before the next step
    (the double's steps fail on offloaded weights). (Before: the chat's load waited for room
    the paused drawing could never give: VramUnavailable.)"""
    sched, gpu = small_card
    manager, inference = _real_worker_stack(sched, gpu, monkeypatch, compute_slots=1)
    try:
        worker = manager.backend("sd", WorkerModel).worker
        draw = inference.draw(DrawRequest("一只猫", steps=40), owner="qq:3")
        await _until(lambda: manager.vram()["cuda:0"]["working_mb"] == 100)
        assert manager.vram()["cuda:0"]["weights_mb"] == {"sd": 500}
        reply = await _chat(inference, Lane.REALTIME, "device:aa", 5)
        assert reply.startswith("t0 ")
        image = (await asyncio.wait_for(draw.result(), 30.0)).decode()
        assert image == f"png {worker.pid} offload,restore"  # moved in the worker, then back
        row = manager.vram()["cuda:0"]
        assert row["offloads"] == 1 and row["restores"] == 1 and row["working_mb"] == 0
        assert int(str(row["peak_mb"])) <= 1000 and gpu.stats.out_of_memory == 0
    finally:
        await manager.close()


async def test_a_worker_model_that_dies_leaves_the_ledger_and_loads_again_with_room(
    small_card: tuple[Scheduler, SimulatedGpu],
) -> None:
    """A worker killed under its job: the job fails, its weights leave the ledger (the dead
    process holds no VRAM), and the next drawing reloads them through the reservation."""
    sched, gpu = small_card
    shape = SimShape(sd_mb=500, working=(("sd", 100),), sd_step_s=0.02)
    models = sim_models_settings(shape, "process")
    manager = ModelManager(
        models,
        sched,
        Path("unused"),
        factories=sim_factories(gpu, shape),
        gpus={"cuda:0": gpu},
        workers=ThreadWorker,
    )
    inference = Inference(sched, manager, models)
    try:
        draw = inference.draw(DrawRequest("一只猫", steps=100), owner="qq:1")
        await _until(lambda: manager.vram()["cuda:0"]["working_mb"] == 100)
        assert manager.vram()["cuda:0"]["weights_mb"] == {"sd": 500}
        worker = manager.backend("sd", WorkerModel).worker
        assert isinstance(worker, ThreadWorker)
        worker.terminate()  # as kill -9: its memory is gone, its call fails at the next step
        with pytest.raises(XiaoyouError):
            await draw.result()
        assert worker.state is WorkerState.DEAD
        await _until(lambda: manager.vram()["cuda:0"]["weights_mb"] == {})
        assert await inference.draw(DrawRequest("一只狗", steps=2), owner="qq:1").result()
        assert manager.vram()["cuda:0"]["weights_mb"] == {"sd": 500}
    finally:
        await manager.close()


SOAK_SHAPE = SimShape(sd_steps=(3, 8), chat_tokens=16)


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(min_value=0, max_value=2**16))
def test_random_mixes_with_vl_and_sd_in_workers_never_run_the_card_out_of_memory(
    seed: int,
) -> None:
    """The soak with VL and SD placed in (thread-double) workers, default scheduler settings:
    every job completes (no deadlock), zero out-of-memory errors, the plan within the
    budget, paused worker models offloaded for voice, REALTIME waits bounded."""
    report = asyncio.run(soak(seed, jobs=6, shape=SOAK_SHAPE, timeout_s=60.0, placement="process"))
    assert report.out_of_memory == 0 and report.errors == {}, report.lines()
    assert report.completed == report.jobs and report.realtime_jobs > 0
    assert report.peak_card_mb <= SOAK_SHAPE.card_mb and report.peak_plan_mb <= SOAK_SHAPE.budget_mb
    assert report.loads > 0 and report.evictions > 0, report.lines()
    # a worker's steps cross a thread and the loop: one lower-lane step plus their hops
    assert report.realtime_wait_max_s <= 2 * report.longest_sd_step_s + 0.05, report.lines()
