"""Idle and half-open sockets (issue #16 item 9): handshake timeout, caps in total and per
address, and /healthz reachable during an idle-socket flood."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import websockets

from tests.abuse.conftest import StartServer


async def _idle_sockets(port: int, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
    return writers


async def _closed_by_server(writer: asyncio.StreamWriter, reader_timeout_s: float) -> bool:
    reader = writer.transport.get_protocol()._stream_reader  # type: ignore[attr-defined]
    try:
        data = await asyncio.wait_for(reader.read(), reader_timeout_s)
    except TimeoutError:
        return False
    return data == b""


async def test_idle_flood_leaves_healthz_reachable_and_is_dropped(
    start_server: StartServer,
) -> None:
    served = start_server(server={"handshake_timeout_s": 1.0, "max_pending_handshakes": 20})
    writers = await _idle_sockets(served.port, 200)  # ten times the pending bound
    async with httpx.AsyncClient() as client:
        started = time.monotonic()
        r = await client.get(f"{served.http}/healthz", timeout=5)
        assert r.status_code == 200 and time.monotonic() - started < 2
    # the oldest were dropped at once, the rest after the handshake timeout
    closed = await asyncio.gather(*(_closed_by_server(w, 5.0) for w in writers))
    assert all(closed)
    for w in writers:
        w.close()


async def test_per_address_cap_refuses_with_503(start_server: StartServer) -> None:
    served = start_server(server={"max_connections_per_address": 3})
    url = f"{served.ws}/xiaozhi/v1/"
    sockets = [await websockets.connect(url, compression=None) for _ in range(3)]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, compression=None)
    assert refused.value.response.status_code == 503
    for ws in sockets:
        await ws.close()
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient() as client:  # room again once they are gone
        assert (await client.get(f"{served.http}/healthz")).status_code == 200
