"""Device credentials (issue #16 item 1 and 3): per-device OTA tokens, allow-list, activation,
one socket per device id, and refusal before the WebSocket upgrade."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.devices.conftest import HubServer, StartHub
from tests.devices.fakes import FakeInference

DEV, CLIENT = "aa:bb:cc:dd:ee:01", "3f0c6a43-1b7e-4a55-9d2c-5e1f00000001"


async def _ota(server: HubServer, device_id: str = DEV, client_id: str = CLIENT) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{server.http}/xiaozhi/ota/",
            json={"application": {"version": "1.0.0"}},
            headers={"Device-Id": device_id, "Client-Id": client_id},
        )


async def _activate(server: HubServer, challenge: str, client_id: str = CLIENT) -> int:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{server.http}/xiaozhi/ota/activate",
            json={"algorithm": "hmac-sha256", "challenge": challenge, "hmac": ""},
            headers={"Device-Id": DEV, "Client-Id": client_id},
        )
    return r.status_code


async def _refused(server: HubServer, headers: dict[str, str]) -> int:
    """The HTTP status a WebSocket upgrade was refused with (fails if it was accepted)."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url, additional_headers=headers, compression=None):
            pass
    return int(info.value.response.status_code)


def _headers(token: str, device_id: str = DEV, client_id: str = CLIENT) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Device-Id": device_id, "Client-Id": client_id}


async def test_ota_never_hands_a_static_token_to_anyone(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, tokens=["tok1"])
    body = (await _ota(server, device_id="stranger", client_id="x")).json()
    assert body["websocket"]["token"] == ""


async def test_allowed_device_gets_its_own_token_which_only_it_can_use(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, auth_secret="k" * 32, allowed_devices=[DEV])
    r = await _ota(server)
    token = r.json()["websocket"]["token"]
    assert r.status_code == 200 and token.count(".") == 1 and DEV not in token
    sim = server.device(device_id=DEV, client_id=CLIENT, token=token)
    assert (await sim.connect())["type"] == "hello"
    await sim.close()
    # the same token under another device id, another client id, or altered: refused
    assert await _refused(server, _headers(token, device_id="aa:bb:cc:dd:ee:02")) == 401
    assert await _refused(server, _headers(token, client_id="other")) == 401
    assert await _refused(server, _headers("x" + token)) == 401
    assert await _refused(server, _headers("")) == 401


async def test_unknown_device_is_activated_by_code_then_gets_a_token(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, auth_secret="k" * 32)
    body = (await _ota(server)).json()
    assert "websocket" not in body  # no credential before activation
    activation = body["activation"]
    code, challenge = activation["code"], activation["challenge"]
    assert len(code) == 6 and code.isdigit() and code in activation["message"]
    assert (await _ota(server)).json()["activation"]["code"] == code  # the same code shown again
    assert await _activate(server, challenge) == 202  # pending: the firmware polls again
    assert await _activate(server, challenge, client_id="spoofer") == 404
    assert await server.hub.auth.approve("000000" if code != "000000" else "111111") is None
    assert await server.hub.auth.approve(code) == DEV
    assert await _activate(server, challenge) == 200
    token = (await _ota(server)).json()["websocket"]["token"]
    assert token
    sim = server.device(device_id=DEV, client_id=CLIENT, token=token)
    assert (await sim.connect())["type"] == "hello"
    # a stranger who knows the MAC but not the board's client id gets its own activation
    other = (await _ota(server, client_id="spoofer")).json()
    assert "websocket" not in other and other["activation"]["code"] != code


async def test_activation_off_refuses_unknown_devices(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, auth_secret="k" * 32, activation=False)
    r = await _ota(server)
    assert r.status_code == 403 and "not allowed" in r.json()["error"]["message"]


async def test_expired_and_revoked_tokens_are_refused(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, auth_secret="k" * 32, token_ttl_s=60)
    pending = server.hub.auth.start_activation(DEV, CLIENT)
    await server.hub.auth.approve(pending.code)
    token = (await _ota(server)).json()["websocket"]["token"]
    real_clock = server.hub.auth._clock
    server.hub.auth._clock = lambda: real_clock() + 120
    assert await _refused(server, _headers(token)) == 401
    server.hub.auth._clock = real_clock
    assert await server.hub.auth.revoke(DEV)
    assert await _refused(server, _headers(token)) == 401


async def test_activations_survive_a_restart_and_write_errors_are_reported(
    tmp_path: Any, fake: FakeInference
) -> None:
    from core.settings import DeviceSettings
    from devices.auth import DeviceAuth

    settings = DeviceSettings(auth_secret="k" * 32)
    auth = DeviceAuth(settings, tmp_path / "devices.json")
    await auth.approve(auth.start_activation(DEV, CLIENT).code)
    assert DeviceAuth(settings, tmp_path / "devices.json").allowed(DEV, CLIENT)
    blocked = tmp_path / "file"
    blocked.write_text("")
    broken = DeviceAuth(settings, blocked / "devices.json")  # parent is a file: cannot write
    assert await broken.approve(broken.start_activation(DEV, CLIENT).code) == DEV
    assert broken.state_error is not None and broken.allowed(DEV, CLIENT)


async def test_bad_token_is_refused_before_the_upgrade(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, tokens=["s3cret"])
    assert await _refused(server, {"Authorization": "Bearer wrong"}) == 401
    assert await _refused(server, {}) == 401
    assert len(server.hub) == 0


async def test_one_socket_per_device_id(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    first = server.device(device_id=DEV)
    await first.connect()
    assert await _refused(server, {"Device-Id": DEV}) == 409
    assert first.close_code is None  # an unproven newcomer does not kick the device off


async def test_a_proven_reconnect_replaces_the_older_socket(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, auth_secret="k" * 32, allowed_devices=[DEV])
    token = (await _ota(server)).json()["websocket"]["token"]
    old = server.device(device_id=DEV, client_id=CLIENT, token=token)
    await old.connect()
    new = server.device(device_id=DEV, client_id=CLIENT, token=token)
    await new.connect()
    code, reason = await old.wait_closed(timeout_s=5)
    assert code == 4409 and "newer connection" in reason
    await asyncio.sleep(0.05)
    assert [s["session_id"] for s in server.hub.snapshot()] == [new.session_id]


async def test_shared_device_ids_when_configured(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake, allow_shared_device_ids=True)
    a, b = server.device(device_id=DEV), server.device(device_id=DEV)
    await a.connect()
    await b.connect()
    assert len(server.hub) == 2
