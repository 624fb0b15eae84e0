"""Abuse against one served app: fuzz of both sockets and the auth matrix of every route.

The server must stay up, answer /healthz, and still serve a well-behaved device and QQ
user afterwards."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import httpx
import pytest
import websockets

from devices.simulator import DeviceSimulator
from tests.abuse.conftest import Served, group_message, onebot_client, run_server
from tests.abuse.server import ADMIN_TOKEN
from tests.devices.fakes import tone_pcm

SEED = 16


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with run_server(tmp_path_factory.mktemp("abuse"), devices={"hello_timeout_s": 2.0}) as s:
        yield s


def _fuzz_frames(rng: random.Random, count: int) -> list[str | bytes]:
    frames: list[str | bytes] = []
    shapes = [
        lambda: rng.randbytes(rng.randint(0, 300)),
        lambda: json.dumps({"type": rng.choice(["hello", "listen", "abort", "mcp", "x"])}),
        lambda: json.dumps(
            {"type": "listen", "state": rng.choice(["start", "stop", 7]), "mode": rng.random()}
        ),
        lambda: "[" * rng.randint(1, 3000),
        lambda: '{"type": "hello", "audio_params": {"sample_rate": ' + "9" * 5000 + "}}",
        lambda: json.dumps({"type": "mcp", "payload": {"id": rng.random(), "x": [[[[]]]]}}),
        lambda: rng.randbytes(8).decode("latin-1"),
    ]
    for _ in range(count):
        frames.append(rng.choice(shapes)())
    return frames


async def _healthy(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{served.http}/healthz", timeout=5)).status_code == 200
    sim = DeviceSimulator(f"{served.ws}/xiaozhi/v1/")
    await sim.connect()
    result = await sim.converse(tone_pcm(0.4), mode="manual", speed=4.0, timeout_s=15)
    await sim.close()
    assert result.stt and result.packets > 0


async def test_device_socket_fuzz(served: Served) -> None:
    rng = random.Random(SEED)
    crashes = 0
    for session in range(20):
        sim = DeviceSimulator(f"{served.ws}/xiaozhi/v1/", protocol_version=rng.choice([1, 2, 3]))
        if session % 2:
            await sim.connect()
        else:
            await sim.open()
        try:
            for frame in _fuzz_frames(rng, 30):
                await sim.send_raw(frame)
        except websockets.ConnectionClosed:
            pass
        await sim.close()
        if sim.close_code == 1006 or sim.close_code == 1011:
            crashes += 1
    assert crashes == 0
    await _healthy(served)


async def test_onebot_socket_fuzz(served: Served) -> None:
    rng = random.Random(SEED)
    async with onebot_client(served) as qq:
        for _ in range(300):
            kind = rng.randrange(4)
            if kind == 0:
                await qq.send(rng.randbytes(rng.randint(0, 200)).decode("latin-1"))
            elif kind == 1:
                await qq.send(json.dumps({"post_type": "message", "message_type": rng.random()}))
            elif kind == 2:
                await qq.send("[" * 2000)
            else:
                await qq.send(json.dumps({"post_type": rng.choice(["notice", "meta_event"])}))
        await qq.send(group_message("你好"))
        assert await qq.wait_replies(1, timeout_s=10), served.output()  # the bot still answers
    await _healthy(served)


def _routes(served: Served) -> list[tuple[str, str]]:
    """Every HTTP route of the served app, from its own OpenAPI schema."""
    spec = httpx.get(f"{served.http}/admin/openapi.json", timeout=10).json()
    return [(m.upper(), p) for p, item in spec["paths"].items() for m in item]


async def test_auth_matrix_every_admin_route(served: Served) -> None:
    """Every /admin route (but the static UI shell and the schema) refuses no or a wrong
    token with 401; the right token is never refused."""
    routes = _routes(served)
    admin = [(m, p) for m, p in routes if p.startswith("/admin") and p not in OPEN_ADMIN]
    assert len(admin) >= 10
    async with httpx.AsyncClient(base_url=served.http, timeout=10) as client:
        for method, path in admin:
            url = path.replace("{job_id}", "1").replace("{name}", "llm")
            url = url.replace("{device_id}", "aa:bb")
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                r = await client.request(method, url, headers=headers, json={"code": "1"})
                assert r.status_code == 401, (method, url, r.status_code)
            r = await client.request(
                method, url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, json={"code": "1"}
            )
            assert r.status_code not in (401, 403), (method, url)
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200


OPEN_ADMIN = {"/admin/ui", "/admin/openapi.json", "/admin/docs"}


def test_route_list_is_complete(served: Served) -> None:
    paths = {p for _, p in _routes(served)}
    assert {"/xiaozhi/ota/", "/xiaozhi/ota/activate", "/admin/devices/activate"} <= paths
