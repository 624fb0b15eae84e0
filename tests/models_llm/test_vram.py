"""VRAM as residency, through the real scheduler, manager and inference facade, with stand-in
backends (bench/gpu_sim.py) that allocate on a SimulatedGpu: weights charged once while
loaded, working memory per job, a paused drawing keeps its pipeline on the card until the
manager offloads it, nothing loads past the budget (the job waits, its position visible), and
random mixes of voice, chat, see and draw never run the card out of memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.gpu_sim import SimLlm, SimShape, sim_factories, sim_models_settings, soak
from core.errors import GpuOutOfMemory, JobCancelled
from core.models.base import CancelCheck
from core.models.gpu_memory import CudaGpu, SimulatedGpu
from core.models.inference import Inference
from core.models.llm import ChatMessage
from core.models.manager import ModelManager
from core.models.sd import DrawRequest
from core.scheduler import Lane, Scheduler, SchedulerSettings

HELLO = [ChatMessage("user", "你好")]


async def _scheduler(budget_mb: int) -> Scheduler:
    sched = Scheduler(
        SchedulerSettings(
            resources={"cpu": 2, "vram:0": budget_mb},
            thread_workers=16,
            prewarm=False,
            drain_timeout_s=5.0,
            cancel_timeout_s=2.0,
            preempt_grace_steps=0,
        )
    )
    await sched.start()
    return sched


@pytest.fixture
async def small_card() -> AsyncIterator[tuple[Scheduler, SimulatedGpu]]:
    """A 1000 MB card, budget 1000 MB."""
    sched = await _scheduler(1000)
    try:
        yield sched, SimulatedGpu(1000)
    finally:
        await sched.stop()


def _manager(
    sched: Scheduler,
    gpu: SimulatedGpu,
    shape: SimShape,
    factories: dict[str, object] | None = None,
    **models: object,
) -> tuple[ModelManager, Inference]:
    settings = sim_models_settings(shape).model_copy(update=models)
    manager = ModelManager(
        settings,
        sched,
        Path("unused"),
        factories={**sim_factories(gpu, shape), **(factories or {})},  # type: ignore[dict-item]
        gpus={"cuda:0": gpu},
    )
    return manager, Inference(sched, manager, settings)


async def _chat(inference: Inference, lane: Lane, owner: str, tokens: int) -> str:
    handle = inference.chat(HELLO, lane=lane, owner=owner, max_tokens=tokens)
    return "".join([piece async for piece in handle.stream()])


def test_the_simulated_gpu_raises_out_of_memory_past_its_capacity() -> None:
    gpu = SimulatedGpu(1000)
    gpu.allocate("weights:sd", 700)
    with pytest.raises(GpuOutOfMemory, match="out of memory"):
        gpu.allocate("weights:llm", 400)
    assert gpu.free("weights:sd") == 700 and gpu.used_mb() == 0.0 and gpu.peak_mb() == 700.0
    assert gpu.stats.out_of_memory == 1
    assert CudaGpu("cuda:0").used_mb() is None  # no CUDA runtime here: nothing measured


class CountingLlm(SimLlm):
    """Counts generations running at once."""

    running = 0
    most = 0

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        type(self).running += 1
        type(self).most = max(type(self).most, type(self).running)
        try:
            yield from super().stream_chat(
                messages, max_tokens=max_tokens, temperature=temperature, check=check
            )
        finally:
            type(self).running -= 1


async def test_two_jobs_on_one_loaded_model_hold_its_weights_once(
    small_card: tuple[Scheduler, SimulatedGpu],
) -> None:
    """600 MB of weights + 2 x 100 MB working fit a 1000 MB budget: both chats run at once.
    (Charged per job, 2 x 600 MB would not fit and the second chat waited for the first.)"""
    sched, gpu = small_card
    shape = SimShape(llm_mb=600, working=(("llm", 100),), token_s=0.01)
    CountingLlm.running = CountingLlm.most = 0
    counting = {"llm": lambda _s, _c: CountingLlm(gpu, shape, shape.llm_mb)}
    manager, inference = _manager(
        sched, gpu, shape, counting, concurrency={"llm": 2}, gpu_compute_slots=2
    )
    replies = await asyncio.gather(
        *(_chat(inference, Lane.INTERACTIVE, f"qq:{i}", 20) for i in range(2))
    )
    assert all(r.startswith("t0 ") for r in replies)
    assert CountingLlm.most == 2  # the two generations overlapped
    row = manager.vram()["cuda:0"]
    assert row["peak_mb"] == 800 and gpu.peak_mb() == 800.0  # weights once, working twice
    assert row["weights_mb"] == {"llm": 600} and row["working_mb"] == 0
    await manager.close()


async def test_a_paused_drawing_keeps_its_pipeline_until_offloaded_for_a_voice_model(
    small_card: tuple[Scheduler, SimulatedGpu],
) -> None:
    """A REALTIME chat preempts a drawing: the drawing pauses at its next step with its
    pipeline and latents still on the card; the chat's model needs the room, so the manager
    offloads the paused pipeline (never loading past the card), and restores it (evicting the
    now idle LLM) before the drawing's next step. (Before: the paused job gave its VRAM
    budget back while the pipeline stayed on the card, and the LLM loaded anyway: OOM.)"""
    sched, gpu = small_card
    shape = SimShape(sd_mb=600, llm_mb=500, working=(("sd", 100), ("llm", 50)), sd_step_s=0.02)
    manager, inference = _manager(sched, gpu, shape)
    draw = inference.draw(DrawRequest("一只猫", steps=30), owner="qq:1")
    for _ in range(200):
        if manager.vram()["cuda:0"]["working_mb"] == 100:
            break
        await asyncio.sleep(0.01)
    assert gpu.held().keys() >= {"weights:sd"}
    reply = await _chat(inference, Lane.REALTIME, "device:aa", 5)
    assert reply.startswith("t0 ")
    assert await draw.result() == b"\x89PNG sim"
    row = manager.vram()["cuda:0"]
    assert row["offloads"] == 1 and row["restores"] == 1 and row["evictions"] == 1
    assert gpu.stats.out_of_memory == 0 and (gpu.peak_mb() or 0) <= 1000
    await manager.close()


async def test_a_model_is_never_loaded_past_the_budget_the_job_waits_with_its_position(
    small_card: tuple[Scheduler, SimulatedGpu],
) -> None:
    """A vision question while a long chat holds the LLM (600 MB) on a 1000 MB card: the VL
    model (500 MB) waits, visible in vram(), and loads once the LLM is idle and evicted.
    (Before: it loaded past the budget with a warning.)"""
    sched, gpu = small_card
    shape = SimShape(llm_mb=600, vl_mb=500, working=(), token_s=0.01)
    manager, inference = _manager(sched, gpu, shape, gpu_compute_slots=2)
    chat = asyncio.ensure_future(_chat(inference, Lane.INTERACTIVE, "qq:1", 40))
    for _ in range(200):
        if "llm" in manager.vram()["cuda:0"]["weights_mb"]:  # type: ignore[operator]
            break
        await asyncio.sleep(0.01)
    see = asyncio.ensure_future(inference.see(b"img", "这是什么", owner="qq:2"))
    waiting: object = []
    for _ in range(100):
        waiting = manager.vram()["cuda:0"]["waiting"]
        if waiting:
            break
        await asyncio.sleep(0.01)
    assert waiting == [{"position": 1, "model": "vl", "need_mb": 500}]
    assert not chat.done()
    assert await see == "一只猫" and (await chat).startswith("t0 ")
    assert gpu.stats.out_of_memory == 0 and (gpu.peak_mb() or 0) <= 1000
    assert manager.vram()["cuda:0"]["weights_mb"] == {"vl": 500}  # the LLM was evicted (LRU)
    await manager.close()


SOAK_SHAPE = SimShape(sd_steps=(3, 8), chat_tokens=16)
# dispatch, thread and loop wake-ups on top of "one SD step" on this shared, loaded box
_STEP_SLACK_S = 0.03


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(min_value=0, max_value=2**16))
def test_random_mixes_of_voice_chat_see_and_draw_never_run_the_card_out_of_memory(
    seed: int,
) -> None:
    """One device talking turn after turn while chats, vision questions and drawings arrive
    at random, with the scheduler's default settings (preempt_grace_steps 2): every job
    completes (no deadlock: bounded by the soak's timeout), the card never runs out of
    memory, and a REALTIME job waits for compute at most one SD step: 95 % within one nominal
    step + 10 ms, none past two of the longest steps that ran (a loaded box). (Before: the
    grace steps of a resumed drawing and a promoted lane taking what a chat yielded made it
    3.6-4.3 steps.)"""
    started = time.monotonic()
    report = asyncio.run(soak(seed, jobs=6, shape=SOAK_SHAPE, timeout_s=60.0))
    assert report.out_of_memory == 0 and report.errors == {}, report.lines()
    assert report.completed == report.jobs and report.realtime_jobs > 0
    assert report.peak_card_mb <= SOAK_SHAPE.card_mb and report.peak_plan_mb <= SOAK_SHAPE.budget_mb
    # one lower-lane step (the longest that really ran), with room for one more of the box's
    # stalls (load average 10 once made a 31 ms step plus hand-offs take 99 ms); the share
    # holds the one-step rule for the rest (the old dispatch: 0.70-0.97, max 93-111 ms)
    longest = report.longest_sd_step_s
    assert report.realtime_wait_max_s <= 2 * longest + _STEP_SLACK_S, report.lines()
    assert report.realtime_within_one_step >= 0.95, report.lines()
    assert report.loads > 0 and report.evictions > 0  # the mix does not fit: it swapped
    assert time.monotonic() - started < 60.0


async def test_a_drawing_cancelled_while_offloaded_leaves_the_ledger_clean(
    small_card: tuple[Scheduler, SimulatedGpu],
) -> None:
    """Cancelled while paused with its pipeline offloaded: its working memory is freed, the
    model counts no paused job, and the next drawing restores the weights first."""
    sched, gpu = small_card
    shape = SimShape(sd_mb=600, llm_mb=500, working=(("sd", 100), ("llm", 50)), sd_step_s=0.02)
    manager, inference = _manager(sched, gpu, shape)
    draw = inference.draw(DrawRequest("一只猫", steps=200), owner="qq:1")
    for _ in range(200):
        if manager.vram()["cuda:0"]["working_mb"] == 100:
            break
        await asyncio.sleep(0.01)
    chat = inference.chat(HELLO, lane=Lane.REALTIME, owner="device:aa", max_tokens=200)
    stream = chat.stream()
    await stream.__anext__()  # the chat runs: the drawing is paused and offloaded
    assert manager.vram()["cuda:0"]["offloaded_mb"] == {"sd": 600}
    draw.cancel()
    with pytest.raises(JobCancelled):
        await draw.result()
    chat.cancel()
    with pytest.raises(JobCancelled):
        async for _piece in stream:
            pass
    await asyncio.sleep(0.05)
    row = next(r for r in manager.snapshot() if r["name"] == "sd")
    assert row["in_use"] == 0 and row["paused"] == 0 and row["offloaded"] is True
    assert manager.vram()["cuda:0"]["working_mb"] == 0
    assert await inference.draw(DrawRequest("一只狗", steps=2), owner="qq:1").result()
    row = manager.vram()["cuda:0"]
    assert row["weights_mb"] == {"sd": 600} and row["restores"] == 1  # the idle LLM made room
    assert gpu.stats.out_of_memory == 0
    await manager.close()
