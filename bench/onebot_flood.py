"""Flood a running ``xiaoyou serve`` with Chinese QQ group messages, as a OneBot v11 client.

    .venv/bin/python -m bench.onebot_flood --port 18080 --messages 200 --groups 200

Connects to ``/onebot/v11/ws`` the way NapCat does (universal reverse WebSocket), sends
``--messages`` group messages that @ the bot, spread over ``--groups`` groups, answers every
action the bot calls with ``ok``, and prints how many replies came back and when.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import websockets

SELF_ID = 10001
TEXTS = (
    "今天晚上吃什么好呢？",
    "给我讲一个关于猫的笑话。",
    "周末去哪里玩比较好？",
    "明天会下雨吗？",
)


def _message(i: int, groups: int) -> str:
    return json.dumps(
        {
            "time": int(time.time()),
            "self_id": SELF_ID,
            "post_type": "message",
            "message_type": "group",
            "sub_type": "normal",
            "message_id": 50_000 + i,
            "group_id": 700_000 + i % groups,
            "user_id": 20_000 + i,
            "anonymous": None,
            "message": [
                {"type": "at", "data": {"qq": str(SELF_ID)}},
                {"type": "text", "data": {"text": " " + TEXTS[i % len(TEXTS)]}},
            ],
            "raw_message": "",
            "font": 14,
            "sender": {"user_id": 20_000 + i, "nickname": f"u{i}", "role": "member"},
        },
        ensure_ascii=False,
    )


async def main(args: argparse.Namespace) -> None:
    headers: dict[str, str] = {"X-Self-ID": str(SELF_ID), "X-Client-Role": "Universal"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    url = f"ws://127.0.0.1:{args.port}/onebot/v11/ws"
    replies: list[tuple[float, str]] = []
    started = time.monotonic()
    async with websockets.connect(url, additional_headers=headers) as ws:
        for i in range(args.messages):
            await ws.send(_message(i, args.groups))
        print(f"sent {args.messages} messages in {time.monotonic() - started:.2f} s", flush=True)
        deadline = started + args.duration_s
        while time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
            except TimeoutError:
                break
            action: dict[str, Any] = json.loads(frame)
            if "echo" not in action:
                continue
            data: Any = {"message_id": 1} if action.get("action") == "send_msg" else {}
            reply = {"status": "ok", "retcode": 0, "data": data, "echo": action["echo"]}
            await ws.send(json.dumps(reply))
            if action.get("action") in ("send_msg", "send_group_msg"):
                message = action.get("params", {}).get("message", [])
                text = "".join(
                    s.get("data", {}).get("text", "") for s in message if isinstance(s, dict)
                )
                replies.append((time.monotonic() - started, text))
                if len(replies) <= 3:
                    print(f"  reply at {replies[-1][0]:.1f} s: {text[:60]!r}", flush=True)
    print(f"{len(replies)} replies within {args.duration_s:.0f} s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--duration-s", type=float, default=120.0)
    asyncio.run(main(parser.parse_args()))
