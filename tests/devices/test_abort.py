"""Abort and barge-in at every stage: jobs cancelled within a chunk, ``tts stop``, then silence."""

from __future__ import annotations

import asyncio
import functools

import numpy as np
import pytest

from devices.simulator import DeviceSimulator
from tests.devices.conftest import StartHub
from tests.devices.fakes import FakeInference, tone_pcm
from tests.polling import until

_until = functools.partial(until, timeout_s=10.0, poll_s=0.01)


def _after(sim: DeviceSimulator, index: int) -> list[str]:
    """What reached the device after record ``index``: message types and 'audio'."""
    return [
        "audio" if r.packet is not None else str(r.message and r.message["type"])
        for r in sim.received[index:]
    ]


@pytest.mark.parametrize("stage", ["asr", "llm", "tts"])
async def test_abort_at_each_stage_cancels_jobs_and_silences_turn(
    start_hub: StartHub, fake: FakeInference, stage: str
) -> None:
    fake.asr_s, fake.token_s, fake.tts_chunk_s = (
        (3.0, 0.005, 0.01) if stage == "asr" else (0.02, 0.005, 0.01)
    )
    if stage == "llm":
        fake.token_s = 0.3
    if stage == "tts":
        fake.tts_chunk_s, fake.tts_ms_per_char = 0.05, 200.0  # long sentences: audio still flowing
    server = await start_hub(fake)
    sim = server.device()
    await sim.connect()
    await sim.listen("start", "manual")
    await sim.stream_pcm(tone_pcm(0.4), speed=4.0)
    await sim.listen("stop", "manual")
    if stage == "tts":
        await _until(lambda: any(r.packet is not None for r in sim.received))
    else:
        await _until(lambda: fake.started.get(stage, 0) == 1)
    mark = len(sim.received)
    await sim.abort("wake_word_detected")
    await sim.wait_message("tts", state="stop", start=mark, timeout_s=2.0)
    await _until(lambda: fake.cancelled.get(stage, 0) == 1, timeout_s=1.0)  # stopped within a chunk
    stop_at = next(
        i
        for i, r in enumerate(sim.received)
        if i >= mark and r.message and r.message.get("state") == "stop"
    )
    await asyncio.sleep(0.6)
    assert _after(sim, stop_at + 1) == []  # nothing of the cancelled turn afterwards
    assert server.hub.snapshot()[0]["state"] == "ready"
    if stage == "asr":
        assert "llm" not in fake.started and sim.messages("stt") == []
    # the device can talk again right away
    fake.asr_s, fake.token_s, fake.tts_chunk_s, fake.tts_ms_per_char = 0.02, 0.002, 0.005, 12.0
    result = await sim.converse(tone_pcm(0.4), mode="manual", speed=4.0)
    assert result.stt == fake.transcript and result.packets > 0


async def test_realtime_barge_in_cancels_speaking_turn(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.tts_chunk_s, fake.tts_ms_per_char = 0.05, 200.0
    server = await start_hub(fake)
    sim = server.device()
    await sim.connect()
    await sim.listen("start", "realtime")
    await sim.stream_pcm(
        np.concatenate([tone_pcm(0.5), np.zeros(16_000, dtype=np.int16)]), speed=2.0
    )
    await _until(lambda: any(r.packet is not None for r in sim.received))
    assert server.hub.snapshot()[0]["state"] == "speaking"
    mark = len(sim.received)
    fake.tts_ms_per_char = 12.0
    await sim.stream_pcm(tone_pcm(0.5), speed=1.0)  # the user talks over the reply
    await sim.wait_message("tts", state="stop", start=mark, timeout_s=3.0)
    await _until(lambda: fake.cancelled.get("tts", 0) >= 1, timeout_s=1.0)
    await sim.stream_silence(1.0, speed=2.0)
    await sim.wait_message("stt", start=mark, timeout_s=5.0)  # the new utterance is answered
    assert fake.started["asr"] == 2


async def test_abort_without_turn_is_harmless(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.connect()
    await sim.abort()
    await asyncio.sleep(0.2)
    assert sim.messages("tts") == [] and server.hub.snapshot()[0]["state"] == "ready"
