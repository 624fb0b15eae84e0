"""The tiny VL and SD models in worker processes behind the real scheduler and manager."""

# mypy: disable-error-code="type-abstract"

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import WorkerDied
from core.models.inference import Inference
from core.models.manager import ModelManager
from core.models.sd import DrawRequest, SdSettings
from core.models.settings import ModelsSettings
from core.models.vl import VlSettings
from core.scheduler import ExecMode, Lane, Scheduler, SchedulerSettings
from core.workers.base import WorkerState
from core.workers.hosted import WorkerModel
from core.workers.process import ProcessWorker
from tests.models_llm.test_inference import audio_doubles, png

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
]

Stack = tuple[Scheduler, ModelManager, Inference]


async def build(models: ModelsSettings, tmp_path: Path) -> Stack:
    scheduler = Scheduler(SchedulerSettings(resources={"cpu": 2}, thread_workers=4, prewarm=False))
    await scheduler.start()
    manager = ModelManager(models, scheduler, tmp_path, factories=audio_doubles())
    return scheduler, manager, Inference(scheduler, manager, models)


@pytest.fixture
async def stack(tiny_vl_dir: Path, tiny_sd_dir: Path, tmp_path: Path) -> AsyncIterator[Stack]:
    models = ModelsSettings(
        vl=VlSettings(model_dir=tiny_vl_dir, max_tokens=60), sd=SdSettings(model_dir=tiny_sd_dir)
    )
    scheduler, manager, inference = await build(models, tmp_path)
    try:
        yield scheduler, manager, inference
    finally:
        await manager.close()
        await scheduler.stop()


def vl_worker(manager: ModelManager) -> ProcessWorker:
    worker = manager.backend("vl", WorkerModel).worker
    assert isinstance(worker, ProcessWorker)
    return worker


def sd_worker(manager: ModelManager) -> ProcessWorker:
    worker = manager.backend("sd", WorkerModel).worker
    assert isinstance(worker, ProcessWorker)
    return worker


async def test_vl_answers_in_its_own_process_streaming_pieces_from_an_async_job(
    stack: Stack,
) -> None:
    scheduler, manager, inference = stack
    assert manager.in_worker("vl") and manager.in_worker("sd")
    handle = inference.see_stream(png(56, 56), "What colour is this?", owner="qq:group:5")
    pieces = [piece async for piece in handle.stream()]
    answer = await handle.result()
    assert pieces and answer == "".join(pieces).strip()
    job = scheduler.job(handle.id)
    assert job is not None and job["mode"] == ExecMode.ASYNC.value  # holds no thread
    assert job["resources"] == {"cpu": 1, "model:vl": 1}
    worker = vl_worker(manager)
    assert worker.pid not in (None, os.getpid())
    row = next(r for r in manager.snapshot() if r["name"] == "vl")
    assert row["placement"] == "process" and row["loaded"]


async def test_a_killed_worker_fails_only_its_job_and_the_next_job_succeeds(stack: Stack) -> None:
    _, manager, inference = stack
    await manager.load("sd")
    worker = sd_worker(manager)
    first_pid = worker.pid
    assert first_pid is not None and worker.state is WorkerState.IDLE
    drawing = inference.draw(
        DrawRequest("a long storm", width=256, height=256, steps=50), owner="q"
    )
    for _ in range(
        3000
    ):  # until the worker runs the drawing (50 steps at 256 px: 64 px took < 0.3 s on a fast box)
        if worker.state is WorkerState.BUSY:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    assert not drawing.done()
    os.kill(first_pid, signal.SIGKILL)  # a native crash of the model process
    other = await inference.transcribe(  # a job on another model is untouched
        np.zeros(16_000, np.float32), lane=Lane.REALTIME, owner="device:1"
    )
    assert other.text == "16000 samples"
    with pytest.raises(WorkerDied) as info:
        await drawing.result()
    assert info.value.retryable is True
    image = await inference.draw(DrawRequest("a cat", width=32, height=32, steps=2), owner="q")
    assert image.startswith(b"\x89PNG")
    assert worker.pid not in (None, first_pid) and worker.state is WorkerState.IDLE
    assert manager.backend("sd", WorkerModel).restarts == 1


async def test_inline_placement_still_streams_on_a_thread(
    tiny_vl_dir: Path, tmp_path: Path
) -> None:
    models = ModelsSettings(vl=VlSettings(model_dir=tiny_vl_dir, max_tokens=8, placement="inline"))
    scheduler, manager, inference = await build(models, tmp_path)
    try:
        assert not manager.in_worker("vl")
        handle = inference.see_stream(png(40, 40), "What is it?", owner="qq:group:7")
        pieces = [piece async for piece in handle.stream()]
        assert pieces and await handle.result() == "".join(pieces).strip()
        job = scheduler.job(handle.id)
        assert job is not None and job["mode"] == ExecMode.THREAD.value
    finally:
        await manager.close()
        await scheduler.stop()
