"""The hub's directory, OTA endpoint, MCP hook and graceful shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from devices.connection import DeviceConnection
from tests.devices.conftest import StartHub
from tests.devices.fakes import FakeInference, tone_pcm


async def test_ota_answers_websocket_url_token_time_firmware(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, tokens=["tok1"], firmware_version="1.2.3")
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{server.http}/xiaozhi/ota/",
            json={"application": {"version": "1.0.0"}},
            headers={"Device-Id": "aa:bb", "Client-Id": "uuid"},
        )
    body = r.json()
    assert r.status_code == 200
    assert body["websocket"] == {
        "url": server.url,
        "token": "",
        "version": 1,
    }  # static tokens stay secret
    assert (
        body["firmware"]["version"] == "1.2.3"
        and body["server_time"]["timestamp"] > 1_600_000_000_000
    )


async def test_ota_timezone_offset_comes_from_the_setting(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Minutes east of UTC: the firmware adds offset * 60 * 1000 to the timestamp (ota.cc)."""
    server = await start_hub(fake, timezone_offset_min=480)
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{server.http}/xiaozhi/ota/", json={})
    assert r.json()["server_time"]["timezone_offset"] == 480


async def test_snapshot_lists_devices_with_fields(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    sim = server.device(device_id="11:22:33:44:55:66", protocol_version=3)
    await sim.connect()
    (snap,) = server.hub.snapshot()
    assert set(snap) == {
        "device_id",
        "client_id",
        "session_id",
        "state",
        "protocol_version",
        "connected_since",
        "remote",
        "mcp_tools",
        "dropped_audio_frames",
    }
    assert snap["session_id"] == sim.session_id and snap["state"] == "ready"
    await sim.close()
    for _ in range(100):
        if not server.hub.snapshot():
            break
        await asyncio.sleep(0.02)
    assert server.hub.snapshot() == []


async def test_mcp_payload_reaches_hook_and_reply_is_sent(
    start_hub: StartHub, fake: FakeInference
) -> None:
    seen: list[dict[str, Any]] = []

    async def hook(conn: DeviceConnection, payload: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(payload)
        return {"jsonrpc": "2.0", "id": payload.get("id"), "result": {"ok": True}}

    server = await start_hub(fake)
    server.hub.on_mcp = hook
    sim = server.device()
    await sim.connect()
    await sim.send_json(
        {"type": "mcp", "payload": {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}}
    )
    for _ in range(250):  # (the server's own requests after hello are mcp messages too)
        replies = [m for m in sim.messages("mcp") if m["payload"].get("id") == 7]
        if replies and "result" in replies[-1]["payload"]:
            break
        await asyncio.sleep(0.02)
    reply = replies[-1]
    assert seen[0]["method"] == "tools/list" and reply["payload"] == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"ok": True},
    }


async def test_close_tells_devices_and_cancels_turns(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.token_s = 0.5  # a slow LLM: the turn is mid-flight at shutdown
    server = await start_hub(fake)
    sims = [server.device(), server.device()]
    for sim in sims:
        await sim.connect()
    await sims[0].listen("start", "manual")
    await sims[0].stream_pcm(tone_pcm(0.3), speed=4.0)
    await sims[0].listen("stop", "manual")
    for _ in range(200):
        if fake.started.get("llm"):
            break
        await asyncio.sleep(0.01)
    await server.hub.close()
    for sim in sims:
        code, reason = await sim.wait_closed(timeout_s=5)
        assert code == 1001 and "shutting down" in reason
    assert len(server.hub) == 0
    for _ in range(100):
        if fake.cancelled.get("llm"):
            break
        await asyncio.sleep(0.01)
    assert fake.cancelled.get("llm") == 1
