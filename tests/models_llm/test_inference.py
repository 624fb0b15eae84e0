"""The inference facade end to end with the real scheduler: real SmolLM2, tiny VL and SD
models, and test doubles for VAD/ASR/TTS (their real backends are tested by audio-models)."""

# mypy: disable-error-code="type-abstract"
# (interface ABCs are passed to ModelManager.use as isinstance targets)

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.errors import JobCancelled
from core.models.inference import Inference
from core.models.llm import ChatMessage, LlmSettings
from core.models.manager import ModelManager
from core.models.sd import DrawRequest, SdSettings
from core.models.settings import ModelsSettings
from core.models.tts import PcmChunk
from core.models.vl import VlSettings
from core.scheduler import Lane, Scheduler, SchedulerSettings, TraceKind
from tests.models_llm.conftest import FakeAsr, FakeTts, FakeVadModel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


async def released(manager: ModelManager, name: str, timeout_s: float = 10.0) -> bool:
    """Wait until no job holds ``name`` (a cancelled job's thread exits at its next check)."""
    for _ in range(int(timeout_s / 0.01)):
        if next(r for r in manager.snapshot() if r["name"] == name)["in_use"] == 0:
            return True
        await asyncio.sleep(0.01)
    return False


async def started(scheduler: Scheduler, job_id: int, timeout_s: float = 30.0) -> bool:
    for _ in range(int(timeout_s / 0.01)):
        if any(e.event is TraceKind.STARTED and e.job_id == job_id for e in scheduler.trace()):
            return True
        await asyncio.sleep(0.01)
    return False


def audio_doubles() -> dict[str, Any]:
    return {
        "vad": lambda _s, _c: FakeVadModel(),
        "asr": lambda _s, _c: FakeAsr(),
        "tts": lambda _s, _c: FakeTts(),
    }


@pytest.fixture
async def stack(
    tiny_vl_dir: Path, tiny_sd_dir: Path, tmp_path: Path
) -> AsyncIterator[tuple[Scheduler, ModelManager, Inference]]:
    settings = ModelsSettings(
        llm=LlmSettings(n_threads=2, n_ctx=1024, max_tokens=24, temperature=0.0),
        vl=VlSettings(model_dir=tiny_vl_dir, max_tokens=8),
        sd=SdSettings(model_dir=tiny_sd_dir),
    )
    # one cpu slot: a realtime job must preempt a running (preemptible) drawing to start
    scheduler = Scheduler(SchedulerSettings(resources={"cpu": 1}, thread_workers=4, prewarm=False))
    await scheduler.start()
    manager = ModelManager(settings, scheduler, tmp_path, factories=audio_doubles())
    try:
        yield scheduler, manager, Inference(scheduler, manager, settings)
    finally:
        await manager.close()
        await scheduler.stop()


async def test_vad_asr_tts_through_jobs(stack: tuple[Scheduler, ModelManager, Inference]) -> None:
    scheduler, manager, inference = stack
    vad = inference.new_vad()
    assert vad.frame_samples == 512
    loud = np.full(512, 3000, dtype=np.int16)
    quiet = np.zeros(512, dtype=np.int16)
    assert await inference.detect_speech(vad, [quiet, loud, loud], owner="device:1") == [
        0.0,
        1.0,
        1.0,
    ]
    transcript = await inference.transcribe(
        np.zeros(16_000, np.float32), lane=Lane.REALTIME, owner="device:1"
    )
    assert transcript.text == "16000 samples" and transcript.audio_s == 1.0
    chunks = [
        c
        async for c in inference.speak(
            "one two three", lane=Lane.REALTIME, owner="d", sample_rate_hz=24_000
        ).stream()
    ]
    assert len(chunks) == 3 and all(
        isinstance(c, PcmChunk) and c.sample_rate_hz == 24_000 for c in chunks
    )
    kinds = {e.kind for e in scheduler.trace() if e.event is TraceKind.COMPLETED}
    assert {"vad", "asr", "tts"} <= kinds
    assert {r["name"] for r in manager.snapshot() if r["loaded"]} == {"vad", "asr", "tts"}


async def test_chat_streams_and_cancels(
    stack: tuple[Scheduler, ModelManager, Inference], smollm2_available: None
) -> None:
    _, manager, inference = stack
    question = [ChatMessage("user", "Name a colour of the sky.")]
    handle = inference.chat(question, lane=Lane.INTERACTIVE, owner="qq:group:1")
    pieces = [piece async for piece in handle.stream()]
    assert "".join(pieces).strip()
    await handle.result()

    handle = inference.chat(question, lane=Lane.INTERACTIVE, owner="qq:group:1", max_tokens=200)
    received: list[str] = []
    with pytest.raises(JobCancelled):
        async for piece in handle.stream():
            received.append(piece)
            if len(received) == 2:
                handle.cancel()
    assert 2 <= len(received) < 200
    with pytest.raises(JobCancelled):
        await handle.result()
    # the handle settles at once; the job's thread leaves at its next check (one token)
    assert await released(manager, "llm")
    row = next(r for r in manager.snapshot() if r["name"] == "llm")
    assert row["loaded"] and row["uses"] == 2


async def test_see_answers(stack: tuple[Scheduler, ModelManager, Inference]) -> None:
    _, _, inference = stack
    answer = await inference.see(png(56, 56), "What colour is this?", owner="qq:group:2")
    assert isinstance(answer, str) and answer


async def test_draw_returns_png_and_yields_to_realtime(
    stack: tuple[Scheduler, ModelManager, Inference],
) -> None:
    scheduler, manager, inference = stack
    assert manager.in_worker("sd")  # the pause happens in the worker, at a denoising step
    draw = inference.draw(
        DrawRequest("a green field", width=64, height=48, steps=12, seed=3), owner="qq:1"
    )
    assert await started(scheduler, draw.id)
    # the only cpu slot is held by the drawing; a realtime job makes it yield at a step
    transcript = await inference.transcribe(
        np.zeros(8_000, np.float32), lane=Lane.REALTIME, owner="device:2"
    )
    assert transcript.text == "8000 samples"
    assert not draw.done()
    image = Image.open(io.BytesIO(await draw.result()))
    assert image.size == (64, 48)
    events = [e.event for e in scheduler.trace() if e.job_id == draw.id]
    assert TraceKind.YIELDED in events and TraceKind.RESUMED in events


async def test_draw_cancel(stack: tuple[Scheduler, ModelManager, Inference]) -> None:
    scheduler, manager, inference = stack
    await manager.load("sd")
    draw = inference.draw(
        DrawRequest("a storm", width=32, height=32, steps=40, seed=4), owner="qq:1"
    )
    assert await started(scheduler, draw.id)
    draw.cancel()
    with pytest.raises(JobCancelled):
        await draw.result()
    assert await released(manager, "sd")
