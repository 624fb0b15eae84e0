"""Play a OneBot v11 implementation (NapCat, go-cqhttp) for one exchange against a running xiaoyou.

Connects to the universal reverse WebSocket as NapCat would, sends one group message that
@-mentions the bot, answers every API call the bot makes, and prints the first reply it sends
to the group. Exit 0 when a reply arrived, 1 otherwise. Standard library + ``websockets`` only,
so it runs inside the service image too (``make docker-check`` uses it).

    python scripts/onebot_probe.py --url ws://127.0.0.1:8080/onebot/v11/ws --token T "讲个笑话"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import sys
import time
import wave
from typing import Any

import websockets

SELF_ID = 10001
GROUP_ID = 123456
USER_ID = 20002


def _event(**fields: Any) -> str:
    return json.dumps({"time": int(time.time()), "self_id": SELF_ID, **fields}, ensure_ascii=False)


def _group_message(message_id: int, text: str, group_id: int = GROUP_ID) -> str:
    segments = [
        {"type": "at", "data": {"qq": str(SELF_ID)}},
        {"type": "text", "data": {"text": text}},
    ]
    return _event(
        post_type="message",
        message_type="group",
        sub_type="normal",
        message_id=message_id,
        group_id=group_id,
        user_id=USER_ID,
        anonymous=None,
        message=segments,
        raw_message=f"[CQ:at,qq={SELF_ID}] {text}",
        font=14,
        sender={"user_id": USER_ID, "nickname": "ming", "card": "阿明", "role": "member"},
    )


def _text_of(message: Any) -> str:
    """The text segments, and a voice record (``/say``) as ``[record: WAV, seconds]``."""
    if isinstance(message, str):
        return message
    parts = []
    for seg in message:
        data = seg.get("data", {})
        if seg.get("type") == "text":
            parts.append(data.get("text", ""))
        elif seg.get("type") == "record":
            parts.append(_describe_record(str(data.get("file", ""))))
    return "".join(parts)


def _describe_record(file: str) -> str:
    if not file.startswith("base64://"):
        return f"[record: {file[:60]}]"
    wav = base64.b64decode(file.removeprefix("base64://"))
    try:
        with wave.open(io.BytesIO(wav)) as w:
            seconds = w.getnframes() / w.getframerate()
            return f"[record: {len(wav)} bytes WAV, {w.getframerate()} Hz, {seconds:.2f} s]"
    except (wave.Error, EOFError):
        return f"[record: {len(wav)} bytes, not a WAV]"


async def probe(
    url: str, token: str, text: str, timeout_s: float, group_id: int = GROUP_ID
) -> str | None:
    headers = {
        "X-Self-ID": str(SELF_ID),
        "X-Client-Role": "Universal",
        "User-Agent": "NapCat-probe",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    message_ids = itertools.count(1000)
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        await ws.send(
            _event(post_type="meta_event", meta_event_type="lifecycle", sub_type="connect")
        )
        await ws.send(_group_message(next(message_ids), text, group_id))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            action = json.loads(frame)
            if "action" not in action:
                continue
            params = action.get("params", {})
            data: Any = {"message_id": next(message_ids)}
            if action["action"] == "get_login_info":
                data = {"user_id": SELF_ID, "nickname": "xiaoyou"}
            reply = {"status": "ok", "retcode": 0, "data": data, "echo": action.get("echo")}
            await ws.send(json.dumps(reply))
            if action["action"] in {"send_group_msg", "send_msg"} and params.get("group_id"):
                said = _text_of(params.get("message", ""))
                print(f"bot -> group {params['group_id']}: {said}", flush=True)
                if said.strip():
                    return said
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/onebot/v11/ws")
    parser.add_argument("--token", default="", help="the OneBot access token")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a reply")
    parser.add_argument("--group", type=int, default=GROUP_ID, help="the group the message is in")
    parser.add_argument("text", nargs="?", default="你好，请用一句话介绍你自己")
    args = parser.parse_args()
    print(f"user -> group {args.group}: @bot {args.text}", flush=True)
    said = asyncio.run(probe(args.url, args.token, args.text, args.timeout, args.group))
    if said is None:
        print("no reply", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
