"""End to end: a raw ``websockets`` client plays the OneBot v11 implementation (universal
reverse WebSocket) against the real app served by uvicorn on 127.0.0.1 in a child process."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.bot.fakes import png_bytes

ROOT = Path(__file__).resolve().parents[2]
ONEBOT_TOKEN = "onebot-secret"
ADMIN_TOKEN = "admin-secret"
SELF_ID = 42
GROUP_ID = 30003
STEP_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """One server for the module: the token test runs first, the session test ends with SIGTERM."""
    tmp_path = tmp_path_factory.mktemp("e2e-server")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bot.e2e_server", str(port), ONEBOT_TOKEN, ADMIN_TOKEN],
        cwd=tmp_path,  # no .env from the checkout
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server died at start-up:\n{proc.communicate(timeout=10)[0]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"server did not become ready:\n{proc.communicate(timeout=10)[0]}")
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)  # reaps the child and closes its pipe


def _headers(token: str | None) -> dict[str, str]:
    headers = {"X-Self-ID": str(SELF_ID), "X-Client-Role": "Universal", "User-Agent": "NapCat-test"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@pytest.fixture
async def onebot(server: tuple[int, subprocess.Popen[str]]) -> AsyncIterator[ClientConnection]:
    port, _ = server
    url = f"ws://127.0.0.1:{port}/onebot/v11/ws"
    async with websockets.connect(url, additional_headers=_headers(ONEBOT_TOKEN)) as ws:
        yield ws


def _event(**fields: Any) -> str:
    return json.dumps({"time": int(time.time()), "self_id": SELF_ID, **fields}, ensure_ascii=False)


_message_ids = iter(range(9000, 10**6))


def _group_message(segments: list[dict[str, Any]]) -> str:
    return _event(
        post_type="message",
        message_type="group",
        sub_type="normal",
        message_id=next(_message_ids),
        group_id=GROUP_ID,
        user_id=20002,
        anonymous=None,
        message=segments,
        raw_message="",
        font=14,
        sender={"user_id": 20002, "nickname": "ming", "card": "阿明", "role": "member"},
    )


async def _next_action(ws: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT_S)
    action: dict[str, Any] = json.loads(frame)
    return action


async def _answer(ws: ClientConnection, action: dict[str, Any], data: Any) -> None:
    await ws.send(json.dumps({"status": "ok", "retcode": 0, "data": data, "echo": action["echo"]}))


def _text_of(message: list[dict[str, Any]]) -> str:
    return "".join(seg["data"].get("text", "") for seg in message if seg["type"] == "text")


def _expired_url() -> str:
    return f"http://127.0.0.1:{_free_port()}/download?fileid=expired"  # nothing listens there


async def test_bad_or_missing_access_token_is_refused(
    server: tuple[int, subprocess.Popen[str]],
) -> None:
    port, _ = server
    url = f"ws://127.0.0.1:{port}/onebot/v11/ws"
    for token in (None, "wrong-token"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=_headers(token)):
                pass
        assert refused.value.response.status_code == 403
    async with websockets.connect(url, additional_headers=_headers(ONEBOT_TOKEN)) as ws:
        assert ws.response is not None
        assert ws.response.status_code == 101


async def test_onebot_session_end_to_end(
    onebot: ClientConnection, server: tuple[int, subprocess.Popen[str]], tmp_path: Path
) -> None:
    port, proc = server
    ws = onebot
    await ws.send(_event(post_type="meta_event", meta_event_type="lifecycle", sub_type="connect"))
    await ws.send(
        _event(
            post_type="meta_event",
            meta_event_type="heartbeat",
            status={"online": True, "good": True},
            interval=5000,
        )
    )

    # 1. chat: @bot + text → one send_msg with the streamed reply
    await ws.send(
        _group_message(
            [
                {"type": "at", "data": {"qq": str(SELF_ID)}},
                {"type": "text", "data": {"text": " 你好"}},
            ]
        )
    )
    action = await _next_action(ws)
    assert action["action"] == "send_msg"
    assert action["params"]["group_id"] == GROUP_ID
    assert _text_of(action["params"]["message"]) == "你好，我是小优。"
    await _answer(ws, action, {"message_id": 1})

    # 2. see: @bot + text + image whose URL already expired → get_image (base64) → answer
    picture = png_bytes(8)
    await ws.send(
        _group_message(
            [
                {"type": "at", "data": {"qq": str(SELF_ID)}},
                {"type": "text", "data": {"text": " 这是什么"}},
                {"type": "image", "data": {"file": "abc.image", "url": _expired_url()}},
            ]
        )
    )
    action = await _next_action(ws)
    assert (action["action"], action["params"]["file"]) == ("get_image", "abc.image")
    await _answer(ws, action, {"file": "", "base64": base64.b64encode(picture).decode()})
    action = await _next_action(ws)
    assert action["action"] == "send_msg"
    assert [s["type"] for s in action["params"]["message"]] == ["reply", "text"]
    assert _text_of(action["params"]["message"]) == "图里是一个红色方块"
    await _answer(ws, action, {"message_id": 2})

    # 3. see via a reply: get_msg (adapter) → get_image gives a path on a shared filesystem
    image_path = tmp_path / "shared.png"
    image_path.write_bytes(picture)
    await ws.send(
        _group_message(
            [
                {"type": "reply", "data": {"id": "555"}},
                {"type": "at", "data": {"qq": str(SELF_ID)}},
                {"type": "text", "data": {"text": " 图里有什么"}},
            ]
        )
    )
    action = await _next_action(ws)
    assert (action["action"], action["params"]) == ("get_msg", {"message_id": 555})
    await _answer(
        ws,
        action,
        {
            "time": int(time.time()),
            "message_type": "group",
            "message_id": 555,
            "real_id": 555,
            "sender": {"user_id": 777, "nickname": "someone"},
            "message": [{"type": "image", "data": {"file": "def.image", "url": _expired_url()}}],
        },
    )
    action = await _next_action(ws)
    assert (action["action"], action["params"]["file"]) == ("get_image", "def.image")
    await _answer(ws, action, {"file": str(image_path)})
    action = await _next_action(ws)
    assert action["action"] == "send_msg"
    assert _text_of(action["params"]["message"]) == "图里是一个红色方块"
    await _answer(ws, action, {"message_id": 3})

    # 4. a slow /draw does not hold up chat: the chat reply overtakes the picture
    await ws.send(_group_message([{"type": "text", "data": {"text": "/draw 一只猫"}}]))
    action = await _next_action(ws)
    assert action["action"] == "send_msg"
    assert "已加入绘图队列" in _text_of(action["params"]["message"])
    await _answer(ws, action, {"message_id": 4})
    await ws.send(_group_message([{"type": "text", "data": {"text": "小优 在吗"}}]))  # by nickname
    action = await _next_action(ws)
    assert _text_of(action["params"]["message"]) == "你好，我是小优。"
    await _answer(ws, action, {"message_id": 5})
    action = await _next_action(ws)
    image = [s for s in action["params"]["message"] if s["type"] == "image"]
    assert len(image) == 1
    jpeg = base64.b64decode(image[0]["data"]["file"].removeprefix("base64://"))
    assert jpeg[:3] == b"\xff\xd8\xff"  # JPEG magic
    await _answer(ws, action, {"message_id": 6})

    # the admin API lists the connected account
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"http://127.0.0.1:{port}/admin/bots",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert response.status_code == 200
    assert str(SELF_ID) in response.text

    # graceful shutdown on SIGTERM: our lifespan shutdown hook runs to the end (uvicorn then
    # re-raises the signal, so the exit status is -SIGTERM rather than 0)
    await ws.close()
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "xiaoyou stopped" in out
