"""Real priority through the facade (issue 14): a model's concurrency is a scheduler resource,
long jobs pause between steps for higher lanes and hand the model over, ASR runs in windows.

Test doubles with the real scheduler and manager; the real llama.cpp hand-over is tested in
test_llamacpp.py."""

# mypy: disable-error-code="type-abstract"

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import InferenceError, JobCancelled
from core.models.asr import Asr, AsrSettings, Transcript
from core.models.base import CancelCheck
from core.models.inference import Inference
from core.models.llm import ChatMessage, Llm, LlmSettings
from core.models.manager import ModelManager
from core.models.settings import ModelsSettings
from core.scheduler import Lane, Scheduler, SchedulerSettings, TraceKind
from tests.models_llm.conftest import FakeTts, FakeVadModel
from tests.polling import until as poll_until


class OneContextLlm(Llm):
    """Like llama.cpp: one context, not thread-safe. Generation state lives in the model
    object; another job's use overwrites it unless saved and restored around a pause."""

    pause_keeps_model = False

    def __init__(self, step_s: float = 0.01) -> None:
        self.step_s = step_s
        self.active: object = None
        self.busy = 0
        self.max_busy = 0
        self.saves = 0
        self.restores = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        pass

    def save_state(self) -> object:
        self.saves += 1
        return self.active

    def restore_state(self, state: object) -> None:
        self.restores += 1
        self.active = state

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        me = self.active = object()
        for i in range(max_tokens):
            check()
            if self.active is not me:
                raise InferenceError("the context was overwritten by another job")
            with self._lock:
                self.busy += 1
                self.max_busy = max(self.max_busy, self.busy)
            try:
                time.sleep(self.step_s)
            finally:
                with self._lock:
                    self.busy -= 1
            yield f"{messages[-1].content}{i} "


class SlowAsr(Asr):
    """Records every piece of audio it is given; ``step_s`` per call."""

    def __init__(self, step_s: float = 0.0) -> None:
        self.step_s = step_s
        self.calls: list[int] = []

    def load(self) -> None:
        pass

    def transcribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        self.calls.append(len(pcm))
        time.sleep(self.step_s)
        return Transcript(f"w{len(self.calls)}", language or "en", len(pcm) / 16_000)


Stack = tuple[Scheduler, ModelManager, Inference, OneContextLlm, SlowAsr]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    settings = ModelsSettings(
        llm=LlmSettings(max_tokens=40, temperature=0.0), asr=AsrSettings(window_s=10.0)
    )
    scheduler = Scheduler(
        SchedulerSettings(
            resources={"cpu": 2},
            thread_workers=4,
            prewarm=False,
            drain_timeout_s=1.0,
            cancel_timeout_s=2.0,
        )
    )
    await scheduler.start()
    llm, asr = OneContextLlm(), SlowAsr()
    factories: dict[str, Any] = {
        "vad": lambda _s, _c: FakeVadModel(),
        "asr": lambda _s, _c: asr,
        "tts": lambda _s, _c: FakeTts(),
        "llm": lambda _s, _c: llm,
    }
    manager = ModelManager(settings, scheduler, tmp_path, factories=factories)
    try:
        yield scheduler, manager, Inference(scheduler, manager, settings), llm, asr
    finally:
        await manager.close()
        await scheduler.stop()


def waits(scheduler: Scheduler, job_id: int) -> float:
    """Seconds from scheduled to started, from the trace."""
    events = {e.event: e.ts for e in scheduler.trace() if e.job_id == job_id}
    return events[TraceKind.STARTED] - events[TraceKind.SCHEDULED]


until = functools.partial(poll_until, timeout_s=10.0, poll_s=0.005)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


async def test_twenty_chats_on_a_busy_llm_leave_a_realtime_asr_job_free_to_start(
    stack: Stack,
) -> None:
    scheduler, _, inference, llm, _ = stack
    chats = [
        inference.chat(user(f"c{i}-"), lane=Lane.INTERACTIVE, owner=f"qq:group:{i}")
        for i in range(20)
    ]
    await until(lambda: llm.busy > 0)
    await asyncio.sleep(0.05)
    cpu_used = scheduler.stats()["resources"]["cpu"]["used"]
    transcript = await inference.transcribe(
        np.zeros(16_000, np.float32), lane=Lane.REALTIME, owner="device:1"
    )
    assert transcript.text == "w1"
    asr_job = next(e.job_id for e in scheduler.trace() if e.kind == "asr")
    assert waits(scheduler, asr_job) < 0.05  # started at the next dispatch, not after a chat
    # one context: one chat runs; the other 19 wait in the queue, holding no thread or cpu
    assert cpu_used == 1
    assert scheduler.stats()["resources"]["model:llm"]["used"] == 1
    for chat in chats:
        chat.cancel()
    assert llm.max_busy == 1  # never two generations on the one context


async def test_a_chat_pauses_between_tokens_and_hands_the_context_to_a_realtime_chat(
    stack: Stack,
) -> None:
    scheduler, _, inference, llm, _ = stack
    background = inference.chat(
        user("bg-"), lane=Lane.INTERACTIVE, owner="qq:group:1", max_tokens=60
    )
    pieces: list[str] = []

    async def read() -> None:
        async for piece in background.stream():
            pieces.append(piece)

    reader = asyncio.create_task(read())
    await until(lambda: len(pieces) >= 3)
    started = time.monotonic()
    voice = inference.chat(user("rt-"), lane=Lane.REALTIME, owner="device:1", max_tokens=5)
    reply = [piece async for piece in voice.stream()]
    assert reply == [f"rt-{i} " for i in range(5)]
    assert time.monotonic() - started < 0.3  # one token of the chat, not its whole reply
    assert not background.done()
    await reader
    assert pieces == [f"bg-{i} " for i in range(60)]  # resumed where it paused, intact
    assert llm.saves >= 1 and llm.restores >= 1 and llm.max_busy == 1
    events = [e.event for e in scheduler.trace() if e.job_id == background.id]
    assert TraceKind.YIELDED in events and TraceKind.RESUMED in events


async def test_long_audio_is_recognised_in_windows_and_a_cancel_stops_within_one(
    stack: Stack,
) -> None:
    scheduler, _, inference, _, asr = stack
    asr.step_s = 0.2
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(35 * 16_000) * 0.1).astype(np.float32)
    task = asyncio.create_task(inference.transcribe(pcm, lane=Lane.REALTIME, owner="device:tv"))
    await until(lambda: len(asr.calls) >= 1)
    task.cancel()
    with pytest.raises((asyncio.CancelledError, JobCancelled)):
        await task
    await asyncio.sleep(0.5)  # the job's thread returns at the next window boundary
    assert len(asr.calls) <= 2
    assert all(n <= 10 * 16_000 for n in asr.calls)
    assert scheduler.stats()["resources"]["model:asr"]["used"] == 0
    asr.step_s, asr.calls = 0.0, []
    whole = await inference.transcribe(pcm, lane=Lane.REALTIME, owner="device:tv")
    assert sum(asr.calls) == len(pcm) and len(asr.calls) == 4
    assert whole.text == "w1 w2 w3 w4" and whole.audio_s == pytest.approx(35.0)


def test_audio_windows_cut_in_the_quietest_part_near_each_boundary() -> None:
    from core.models.inference import audio_windows

    loud = np.full(16_000 * 25, 0.5, np.float32)
    loud[int(9.0 * 16_000) : int(9.1 * 16_000)] = 0.0  # a pause 1 s before the 10 s boundary
    pieces = list(audio_windows(loud, 10 * 16_000))
    assert sum(len(p) for p in pieces) == len(loud)
    assert all(len(p) <= 10 * 16_000 for p in pieces)
    assert 9.0 * 16_000 <= len(pieces[0]) <= 9.1 * 16_000  # cut inside the pause
    assert [len(p) for p in audio_windows(loud[:16_000], 10 * 16_000)] == [16_000]
