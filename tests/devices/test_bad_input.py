"""Bad input from a device: a clear error or close code; other devices keep being served."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

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


@pytest.mark.parametrize("version", ["7", "abc"])
async def test_wrong_protocol_version_closes(
    start_hub: StartHub, fake: FakeInference, version: str
) -> None:
    server = await start_hub(fake)
    async with connect(
        server.url, additional_headers={"Protocol-Version": version}, compression=None
    ) as ws:
        await ws.wait_closed()
        assert ws.close_code == 4400 and "protocol version" in (ws.close_reason or "")
    assert len(server.hub) == 0


async def test_wrong_version_in_hello_closes(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.open()
    await sim.send_json({"type": "hello", "version": 9, "transport": "websocket"})
    code, reason = await sim.wait_closed()
    assert code == 4400 and "version 9" in reason


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_bad_token_closes_4401(
    start_hub: StartHub, fake: FakeInference, token: str | None
) -> None:
    server = await start_hub(fake, tokens=["s3cret"])
    sim = server.device(token=token)
    await sim.open()
    code, reason = await sim.wait_closed()
    assert code == 4401 and "token" in reason
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
