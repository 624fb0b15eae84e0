"""Faults inside a turn (issue #16 item 13): the device's turn is always closed."""

from __future__ import annotations

import pytest

from core.errors import InferenceError, ModelLoadError
from devices.simulator import DeviceSimulator
from tests.devices.conftest import StartHub
from tests.devices.fakes import FakeInference, tone_pcm


async def ask_once(start_hub: StartHub, fake: FakeInference, mode: str) -> DeviceSimulator:
    """A device that has just said one utterance (in ``mode``) to a fresh hub."""
    server = await start_hub(fake)
    sim = server.device()
    await sim.connect()
    await sim.listen("start", mode)
    await sim.stream_pcm(tone_pcm(0.4), speed=4.0)
    if mode == "manual":
        await sim.listen("stop", "manual")
    else:
        await sim.stream_silence(1.0, speed=4.0)
    return sim


@pytest.mark.parametrize("mode", ["manual", "auto"])
@pytest.mark.parametrize(
    "error",
    [
        ModelLoadError("llm: load failed: ValueError: /models/secret/llm.gguf: bad magic"),
        InferenceError("llm exploded"),
        RuntimeError("a bug"),
    ],
)
async def test_failed_model_sends_error_then_tts_stop(
    start_hub: StartHub, fake: FakeInference, error: Exception, mode: str
) -> None:
    """The LLM fails before its first piece: nothing was spoken, the device used to get only
    ``error`` (which firmware ignores) and waited forever."""
    fake.chat_error = error
    sim = await ask_once(start_hub, fake, mode)
    failure = await sim.wait_message("error", timeout_s=10)
    stop = await sim.wait_message("tts", state="stop", timeout_s=5)
    assert stop["state"] == "stop"
    assert "/models/" not in failure["message"]  # no paths to whoever reads the device log
    fake.chat_error = None
    if mode == "manual":  # the session goes on
        result = await sim.converse(tone_pcm(0.4), mode="manual", speed=4.0)
        assert result.stt == fake.transcript and result.packets > 0


@pytest.mark.parametrize("mode", ["manual", "auto"])
async def test_a_failed_turn_is_apologised_for_aloud(
    start_hub: StartHub, fake: FakeInference, mode: str
) -> None:
    """The firmware ignores ``error``: with the LLM's box down, a device turn ended in silence
    (seen with Ray workers as a user). The apology is spoken, then the turn ends as usual."""
    fake.chat_error = InferenceError("llm box lost")
    sim = await ask_once(start_hub, fake, mode)
    await sim.wait_message("error", timeout_s=10)
    await sim.wait_message("tts", state="start", timeout_s=5)
    sentence = await sim.wait_message("tts", state="sentence_start", timeout_s=5)
    assert sentence["text"] == "抱歉，我这边出了点问题，请稍后再试。"
    await sim.wait_message("tts", state="stop", timeout_s=10)
    assert any(r.packet for r in sim.received)  # spoken, not only shown
