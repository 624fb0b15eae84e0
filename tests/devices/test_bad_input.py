"""Bad input from a device: a clear error or close code; other devices keep being served."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.devices.conftest import StartHub
from tests.devices.fakes import FakeInference, tone_pcm


async def _healthy_neighbour_still_served(server, fake: FakeInference) -> None:  # type: ignore[no-untyped-def]
    other = server.device()
    await other.connect()
    result = await other.converse(tone_pcm(0.4), mode="manual", speed=4.0)
    assert result.stt == fake.transcript and result.packets > 0


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "dance"}', "unknown message type 'dance'"),
        ('{"type": "listen", "state": "sing"}', "invalid 'listen' message: state"),
        ('{"type": "mcp"}', "payload"),
    ],
)
async def test_bad_json_gets_error_and_session_continues(
    start_hub: StartHub, fake: FakeInference, payload: str, needle: str
) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.connect()
    await sim.send_raw(payload)
    error = await sim.wait_message("error", timeout_s=5)
    assert needle in error["message"] and error["code"] == "protocol"
    result = await sim.converse(tone_pcm(0.4), mode="manual", speed=4.0)  # same socket still works
    assert result.stt == fake.transcript


async def test_binary_before_hello_closes(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.open()
    await sim.send_raw(b"\x01\x02\x03")
    code, reason = await sim.wait_closed()
    assert code == 4400 and "before hello" in reason
    await _healthy_neighbour_still_served(server, fake)


@pytest.mark.parametrize("version", ["7", "abc", "\u00b2", "9" * 5000])
async def test_wrong_protocol_version_is_refused(
    start_hub: StartHub, fake: FakeInference, version: str
) -> None:
    """Refused before the upgrade with 400; ``²`` passed isdigit() and crashed int() (1006)."""
    server = await start_hub(fake)
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            server.url, additional_headers={"Protocol-Version": version}, compression=None
        ):
            pass
    assert info.value.response.status_code == 400
    assert b"protocol version" in info.value.response.body
    assert len(server.hub) == 0
    await _healthy_neighbour_still_served(server, fake)


async def test_wrong_version_in_hello_closes(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.open()
    await sim.send_json({"type": "hello", "version": 9, "transport": "websocket"})
    code, reason = await sim.wait_closed()
    assert code == 4400 and "version 9" in reason


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_bad_token_is_refused_401(
    start_hub: StartHub, fake: FakeInference, token: str | None
) -> None:
    server = await start_hub(fake, tokens=["s3cret"])
    sim = server.device(token=token)
    with pytest.raises(InvalidStatus) as info:
        await sim.open()
    assert info.value.response.status_code == 401 and b"token" in info.value.response.body
    good = server.device(token="s3cret")
    assert (await good.connect())["type"] == "hello"


async def test_oversized_frame_closes_1009(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake, max_frame_bytes=2048)
    sim = server.device()
    await sim.connect()
    await sim.send_raw(b"\x00" * 4096)
    code, reason = await sim.wait_closed()
    assert code == 1009 and "4096 bytes" in reason
    await _healthy_neighbour_still_served(server, fake)


async def test_invalid_opus_is_reported_and_dropped(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.connect()
    await sim.listen("start", "manual")
    await sim.send_packet(b"\xff\xff\xff")
    error = await sim.wait_message("error", timeout_s=5)
    assert error["code"] == "invalid_opus" and "invalid Opus packet" in error["message"]
    await sim.stream_pcm(tone_pcm(0.4), speed=4.0)
    await sim.listen("stop", "manual")
    assert (await sim.wait_message("stt", timeout_s=10))["text"] == fake.transcript


async def test_bad_v2_header_is_reported(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    sim = server.device(protocol_version=2)
    await sim.connect()
    await sim.send_raw(b"\x00\x02\x00\x00")
    error = await sim.wait_message("error", timeout_s=5)
    assert "shorter than its 16-byte header" in error["message"]


async def test_no_hello_times_out(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake, hello_timeout_s=0.3)
    sim = server.device()
    await sim.open()
    await sim.send_raw(json.dumps({"type": "listen", "state": "start"}))
    error = await sim.wait_message("error", timeout_s=5)
    assert "expected hello" in error["message"]
    code, reason = await sim.wait_closed()
    assert code == 4408 and "no hello within 0.3 s" in reason


async def test_idle_timeout_closes(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake, idle_timeout_s=0.4)
    sim = server.device()
    await sim.connect()
    code, reason = await sim.wait_closed(timeout_s=5)
    assert code == 1000 and "idle" in reason
    assert len(server.hub) == 0


_DEEP = "[" * 5000 + "]" * 5000
_HUGE_NUMBER = '{"type": "listen", "state": "start", "n": ' + "9" * 5000 + "}"


@pytest.mark.parametrize(
    ("payload", "needle"), [(_DEEP, "nested too deeply"), (_HUGE_NUMBER, "digits")]
)
@pytest.mark.parametrize("when", ["before hello", "after hello"])
async def test_deep_json_and_huge_numbers_get_an_error_not_a_crash(
    start_hub: StartHub, fake: FakeInference, payload: str, needle: str, when: str
) -> None:
    """Both raised past the JSON error handler and ended the session with 1006."""
    server = await start_hub(fake)
    sim = server.device()
    if when == "before hello":
        await sim.open()
        await sim.send_raw(payload)
        error = await sim.wait_message("error", timeout_s=5)
        assert needle in error["message"]
        hello = await sim.connect_on_open()
        assert hello["type"] == "hello"
    else:
        await sim.connect()
        await sim.send_raw(payload)
        error = await sim.wait_message("error", timeout_s=5)
        assert needle in error["message"]
    result = await sim.converse(tone_pcm(0.4), mode="manual", speed=4.0)
    assert result.stt == fake.transcript


async def test_frame_size_limit_applies_before_hello(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, max_frame_bytes=2048)
    sim = server.device()
    await sim.open()
    await sim.send_raw("x" * 100_000)
    code, reason = await sim.wait_closed()
    assert code == 1009 and "100000 bytes" in reason


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"sample_rate": 1e15}, "sample_rate"),
        ({"frame_duration": 0}, "frame_duration"),
        ({"frame_duration": -60}, "frame_duration"),
        ({"channels": 2}, "channels"),
    ],
)
async def test_absurd_audio_params_are_rejected_with_an_error(
    start_hub: StartHub, fake: FakeInference, params: dict[str, object], needle: str
) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.open()
    audio = {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60}
    await sim.send_json({"type": "hello", "version": 1, "audio_params": {**audio, **params}})
    error = await sim.wait_message("error", timeout_s=5)
    assert f"audio_params.{needle}" in error["message"]
    assert sim.messages("hello") == []  # not accepted silently
    assert (await sim.connect_on_open())["type"] == "hello"  # a sane hello still works


async def test_audio_flood_is_dropped_counted_and_reported(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Issue #16 item 8: 10,000 tiny frames a second were all decoded (38 s of CPU for 5 s)."""
    server = await start_hub(fake, max_audio_frames_per_s=50)
    sim = server.device()
    await sim.connect()
    await sim.listen("start", "manual")
    packet = sim._encoder.encode(tone_pcm(0.06))[0]
    for _ in range(2000):
        await sim.send_packet(packet)
    error = await sim.wait_message("error", code="rate_limited", timeout_s=5)
    assert "dropped" in error["message"]
    conn = server.hub.connection(sim.device_id)
    assert conn is not None
    for _ in range(100):
        if conn.dropped_audio_frames >= 1900:
            break
        await asyncio.sleep(0.02)
    assert 1900 <= conn.dropped_audio_frames <= 1950  # about one second of burst got through
    assert len(sim.messages("error")) < 5  # told, not flooded back
    await _healthy_neighbour_still_served(server, fake)
