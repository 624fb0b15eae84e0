"""The maximum utterance length gives the device a clear end (issue 14 item 3): speech that
never pauses (auto) or a button never released (manual) still gets stt, the reply and
``tts stop``, as the firmware expects, with at most ``max_utterance_s`` of audio recognised."""

from __future__ import annotations

import numpy as np
import pytest

from devices.turn import ASR_KEY
from tests.devices.conftest import HubServer, StartHub
from tests.devices.fakes import FakeInference, tone_pcm
from tests.devices.firmware_emulator import FirmwareEmulator

MAX_S = 1.5


def emulator(server: HubServer) -> FirmwareEmulator:
    emu = FirmwareEmulator(server.http)
    server.simulators.append(emu)
    return emu


@pytest.mark.parametrize("mode", ["auto", "manual"])
async def test_speech_longer_than_the_maximum_ends_the_utterance_for_the_device(
    start_hub: StartHub, fake: FakeInference, mode: str
) -> None:
    server = await start_hub(fake, max_utterance_s=MAX_S)
    emu = emulator(server)
    await emu.boot()
    await emu.start_listening(mode)
    start = len(emu.received)
    await emu.say(tone_pcm(3 * MAX_S), speed=2.0)  # no pause, no 'listen stop'
    stt = await emu.wait_message("stt", start=start, timeout_s=10)
    assert stt["text"] == fake.transcript
    await emu.wait_message("tts", state="start", start=start, timeout_s=10)
    await emu.wait_message("tts", state="stop", start=start, timeout_s=10)
    assert emu.decoded_audio().size > 0
    assert len(fake.asr_audio_s) == 1 and fake.asr_audio_s[0] <= MAX_S + 0.1
    assert fake.asr_supersedes == [ASR_KEY]  # a newer transcription would cancel this one
    # the firmware's own reaction to tts stop: auto listens again, manual goes idle
    assert emu.state == ("listening" if mode == "auto" else "idle")
    if mode == "manual":  # the button is released later: nothing more happens
        await emu.listen("stop", None)
        await emu.say(np.zeros(1600, dtype=np.int16))
        assert len(fake.asr_audio_s) == 1
