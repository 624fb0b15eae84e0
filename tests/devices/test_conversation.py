"""Conversations over a real loopback WebSocket: test-double models on the real scheduler."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from devices.simulator import DeviceSimulator
from tests.devices.conftest import StartHub
from tests.devices.fakes import FakeInference, tone_pcm


def _silence(duration_s: float) -> np.ndarray:
    return np.zeros(int(duration_s * 16_000), dtype=np.int16)


async def test_auto_mode_turn_reaches_device_in_order(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake)
    sim = server.device()
    hello = await sim.connect()
    assert hello["transport"] == "websocket" and hello["audio_params"]["sample_rate"] == 24_000
    assert server.hub.snapshot()[0]["state"] == "ready"
    result = await sim.converse(np.concatenate([_silence(0.3), tone_pcm(1.0)]), speed=4.0)
    assert result.stt == fake.transcript
    assert result.emotion == "happy"
    assert result.sentences == [  # the first sentence is cut early (first_chunk_chars=12)
        "Canberra is the",
        "capital of Australia.",
        "It is about three hundred kilometres from Sydney.",
    ]
    kinds = [  # (mcp: the server asks the device for its tools after hello)
        (m["type"], m.get("state")) for m in sim.messages() if m["type"] not in ("hello", "mcp")
    ]
    assert kinds == [
        ("stt", None),
        ("llm", None),
        ("tts", "start"),
        ("tts", "sentence_start"),
        ("tts", "sentence_start"),
        ("tts", "sentence_start"),
        ("tts", "stop"),
    ]
    assert all(
        m.get("session_id") == sim.session_id for m in sim.messages() if m["type"] != "hello"
    )
    # audio: every packet decodes; total length matches what the fake synthesised
    expected_s = sum(len(s) for s in result.sentences) * fake.tts_ms_per_char / 1000
    assert abs(len(result.audio) / 24_000 - expected_s) < 0.2
    assert np.abs(result.audio).max() > 3000
    # paced: a short burst, then real time; the device never holds more than its 2.4 s buffer
    arrivals = [r.at_s for r in sim.received if r.packet is not None]
    ahead_s = [(i + 1) * 0.06 - (t - arrivals[0]) for i, t in enumerate(arrivals)]
    assert 0.3 <= max(ahead_s) <= 0.6 < 2.4
    assert arrivals[-1] - arrivals[0] > (len(arrivals) - 8) * 0.06
    # the utterance sent to ASR holds the tone plus preroll, not the leading silence
    assert 0.9 < fake.asr_audio_s[0] < 1.9
    assert server.hub.snapshot()[0]["state"] == "listening"
    conn = server.hub.connection(sim.device_id)
    assert conn is not None and conn.pipeline is not None and conn.pipeline.last_turn is not None
    assert conn.pipeline.last_turn.timings.speculative  # the turn began during the hangover
    assert fake.started["asr"] == 1 and fake.started["llm"] == 1  # the speculation was adopted


async def test_pause_then_more_speech_drops_speculative_turn(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.connect()
    speech = np.concatenate(
        [tone_pcm(0.6), _silence(0.35), tone_pcm(0.6)]
    )  # pause < 500 ms hangover
    result = await sim.converse(speech, speed=2.0)
    assert result.stt == fake.transcript and len(sim.messages("stt")) == 1
    assert len(sim.messages("llm")) == 1 and len(sim.messages("tts")) == 5  # one reply only
    assert len(fake.asr_audio_s) == 2  # the speculation on the first half, then the whole utterance
    assert fake.asr_audio_s[0] < 1.2 < fake.asr_audio_s[1]
    conn = server.hub.connection(sim.device_id)
    assert conn is not None and conn.pipeline is not None
    assert len(conn.pipeline.memory) == 1  # the dropped speculation left nothing behind


async def test_manual_mode_listen_stop_ends_utterance(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake)
    sim = server.device(protocol_version=3)
    await sim.connect()
    result = await sim.converse(tone_pcm(0.6), mode="manual", speed=4.0)
    assert result.stt == fake.transcript and result.packets > 10
    assert abs(fake.asr_audio_s[0] - 0.6) < 0.07  # everything between start and stop, no VAD cut
    assert server.hub.snapshot()[0]["state"] == "ready"
    assert server.hub.snapshot()[0]["protocol_version"] == 3


async def test_memory_carries_previous_exchange(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    sim = server.device(protocol_version=2)
    await sim.connect()
    await sim.converse(tone_pcm(0.5), mode="manual", speed=4.0)
    await sim.converse(tone_pcm(0.5), mode="manual", speed=4.0)
    second = fake.chat_prompts[1]
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[2].content == fake.reply


async def test_more_devices_than_cpu_slots_are_all_answered(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Every job takes one of 2 cpu slots. A turn pauses its LLM (which keeps its slot) only
    while its first TTS job runs: pausing for a TTS job still queued behind the paused LLM
    jobs of other devices would deadlock all of them."""
    fake.resources = {"cpu": 1}
    server = await start_hub(fake)
    sims = [server.device() for _ in range(4)]
    for sim in sims:
        await sim.connect()
    results = await asyncio.wait_for(
        asyncio.gather(*(s.converse(tone_pcm(0.8), speed=2.0, timeout_s=20) for s in sims)),
        30,
    )
    assert all(r.stt == fake.transcript and len(r.sentences) == 3 for r in results)
    assert fake.finished.get("llm") == 4 and fake.finished.get("tts") == 12


async def test_two_devices_talking_at_once_are_both_answered(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake)
    sims = [server.device(), server.device()]
    for sim in sims:
        await sim.connect()
    results = await asyncio.gather(*(s.converse(tone_pcm(0.8), speed=2.0) for s in sims))
    for result in results:
        assert result.stt == fake.transcript and len(result.sentences) == 3 and result.packets > 10
    assert len({s["session_id"] for s in server.hub.snapshot()}) == 2


async def test_empty_transcript_in_manual_mode_ends_the_turn(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """No stt, no LLM, no speech, but ``tts stop``: push-to-talk firmware waits for an answer
    (issue #16 item 15: it used to get nothing at all)."""
    fake.transcript = "  "
    server = await start_hub(fake)
    sim = server.device()
    await sim.connect()
    await sim.listen("start", "manual")
    await sim.stream_pcm(tone_pcm(0.3), speed=4.0)
    await sim.listen("stop", "manual")
    for _ in range(50):
        if fake.finished.get("asr"):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert fake.finished.get("asr") == 1 and "llm" not in fake.started
    assert sim.messages("tts") == [{"type": "tts", "state": "stop", "session_id": sim.session_id}]
    assert sim.messages("stt") == []


async def test_query_parameter_fallback(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake, tokens=["secret"])
    sim: DeviceSimulator = server.device(
        device_id="aa:bb:cc:dd:ee:ff", token="secret", use_query=True, protocol_version=2
    )
    await sim.connect()
    snap = server.hub.snapshot()[0]
    assert snap["device_id"] == "aa:bb:cc:dd:ee:ff" and snap["protocol_version"] == 2
    assert snap["client_id"] == sim.client_id and str(snap["remote"]).startswith("127.0.0.1:")


async def test_simulate_device_cli(
    start_hub: StartHub, fake: FakeInference, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import json
    import wave

    from devices import simulator_cli

    server = await start_hub(fake)
    wav_path, out_path = tmp_path / "q.wav", tmp_path / "reply.wav"
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22_050)  # resampled to 16 kHz by the simulator
        w.writeframes(tone_pcm(0.6, sample_rate_hz=22_050).tobytes())
    parser = argparse.ArgumentParser()
    simulator_cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--url",
            server.url,
            "--wav",
            str(wav_path),
            "--mode",
            "manual",
            "--speed",
            "4",
            "--protocol",
            "2",
            "--json",
            "--save-audio",
            str(out_path),
        ]
    )
    assert await simulator_cli._run(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["stt"] == fake.transcript and line["packets"] > 0 and len(line["sentences"]) == 3
    with wave.open(str(out_path), "rb") as w:
        assert w.getframerate() == 24_000 and w.getnframes() > 0
