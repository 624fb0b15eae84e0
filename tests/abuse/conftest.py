"""Abuse-suite fixtures: a child-process server (tests/abuse/server.py) on a free loopback
port and a OneBot v11 client that plays the QQ side (answers every API call)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.abuse.server import ADMIN_TOKEN, ONEBOT_TOKEN, SELF_ID

ROOT = Path(__file__).resolve().parents[2]
GROUP_ID = 30003
# server option for floods of many users in one group that must all be answered
NO_GROUP_LIMIT = {"limits": {"chat": {"user_per_minute": 10, "user_burst": 5,
                                      "group_per_minute": 0, "group_burst": 1}}}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, port: int, proc: subprocess.Popen[str]) -> None:
        self.port = port
        self.proc = proc
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        self.data_dir: Path | None = None  # set by callers that gave it one (bench: full disk)
        self.data_dir_kind = ""

    def output(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.communicate(timeout=10)[0]


@contextmanager
def run_server(tmp_path: Path, **options: Any) -> Iterator[Served]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.abuse.server", str(port), json.dumps(options)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(port, proc)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server died at start-up:\n{served.output()}")
        try:
            if httpx.get(f"{served.http}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not start:\n{served.output()}")
        time.sleep(0.1)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


StartServer = Callable[..., Served]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    stack: list[Any] = []

    def start(**options: Any) -> Served:
        ctx = run_server(tmp_path, **options)
        served = ctx.__enter__()
        stack.append(ctx)
        return served

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def onebot_headers(token: str | None = ONEBOT_TOKEN) -> dict[str, str]:
    headers = {"X-Self-ID": str(SELF_ID), "X-Client-Role": "Universal"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


_ids = iter(range(10_000, 10**9))


def group_message(text: str, *, user_id: int = 20002, at_bot: bool = True) -> str:
    segments: list[dict[str, Any]] = [{"type": "text", "data": {"text": text}}]
    if at_bot:
        segments.insert(0, {"type": "at", "data": {"qq": str(SELF_ID)}})
    return json.dumps(
        {
            "time": int(time.time()),
            "self_id": SELF_ID,
            "post_type": "message",
            "message_type": "group",
            "sub_type": "normal",
            "message_id": next(_ids),
            "group_id": GROUP_ID,
            "user_id": user_id,
            "anonymous": None,
            "message": segments,
            "raw_message": text,
            "font": 14,
            "sender": {"user_id": user_id, "nickname": "ming", "card": "", "role": "member"},
        },
        ensure_ascii=False,
    )


def text_of(message: Any) -> str:
    if isinstance(message, str):
        return message
    return "".join(seg["data"].get("text", "") for seg in message if seg.get("type") == "text")


class OneBotClient:
    """Plays NapCat: sends events, answers every action ``ok``, records the replies."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.replies: list[str] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        try:
            async for frame in self.ws:
                action = json.loads(frame)
                if action.get("action") in ("send_msg", "send_group_msg", "send_private_msg"):
                    self.replies.append(text_of(action["params"]["message"]))
                    self._changed.set()
                if "echo" in action:
                    data = {"message_id": len(self.replies)}
                    answer = {"status": "ok", "retcode": 0, "data": data, "echo": action["echo"]}
                    await self.ws.send(json.dumps(answer))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._changed.set()
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason or ""

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def wait_replies(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.replies) < count:
            self._changed.clear()
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or self._task.done():
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining_s)
            except TimeoutError:
                return False
        return True

    async def wait_closed(self, timeout_s: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._task), timeout_s)


@asynccontextmanager
async def onebot_client(served: Served) -> AsyncIterator[OneBotClient]:
    url = f"{served.ws}/onebot/v11/ws"
    async with websockets.connect(url, additional_headers=onebot_headers(), max_size=None) as ws:
        client = OneBotClient(ws)
        await asyncio.sleep(0.2)  # the adapter registers the bot
        yield client
