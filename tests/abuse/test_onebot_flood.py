"""Group chatter and malformed events must not stall the event loop (issue #16 item 10).

Measured before (bench/onebot_loop_lag.py): 100 messages per second of chatter not addressed
to the bot lagged the loop 3 s, 1,000 malformed events 3.8 s, because every event went
through NoneBot's matcher checks (about 20 anyio tasks each). They are now screened in the
adapter before NoneBot parses them."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from bot.onebot_screen import addressed, well_formed
from tests.abuse.conftest import StartServer, group_message, onebot_client
from tests.abuse.server import SELF_ID

NICKNAMES = ("小优",)
STARTS = ("/", "")


def _event(segments: list[dict[str, object]] | str, **fields: object) -> dict[str, object]:
    event = json.loads(group_message("x"))
    event["message"] = segments
    event.update(fields)
    return event


def _text(text: str) -> dict[str, object]:
    return {"type": "text", "data": {"text": text}}


@pytest.mark.parametrize(
    ("segments", "fields"),
    [
        ([{"type": "at", "data": {"qq": str(SELF_ID)}}, _text(" 你好")], {}),
        ([_text("你好 "), {"type": "at", "data": {"qq": SELF_ID}}], {}),  # at the end, int qq
        ([{"type": "reply", "data": {"id": "5"}}, _text("这是什么")], {}),  # NoneBot asks whose
        ([_text("  小优，今天吃什么")], {}),
        ([_text("/draw 一只猫")], {}),
        ([_text("随便说说")], {"message_type": "private"}),
        (f"[CQ:at,qq={SELF_ID}] 你好", {}),
        ([_text("x")], {"post_type": "notice", "notice_type": "group_increase"}),
    ],
)
def test_addressed_messages_reach_nonebot(segments: object, fields: dict[str, object]) -> None:
    event = _event(segments, **fields)  # type: ignore[arg-type]
    assert addressed(event, nicknames=NICKNAMES, command_starts=STARTS)


@pytest.mark.parametrize(
    "segments",
    [
        [_text("今天晚上吃什么好呢？")],
        [_text("哈哈"), {"type": "face", "data": {"id": "14"}}],
        [{"type": "at", "data": {"qq": "777"}}, _text(" 你看这个")],  # somebody else
        [_text("画得真好")],  # the bare-command start "" alone does not address the bot
        "普通的一句话",
    ],
)
def test_group_chatter_is_screened(segments: object) -> None:
    assert not addressed(_event(segments), nicknames=NICKNAMES, command_starts=STARTS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"sender": "not a sender"},
        {"message_id": "abc"},
        {"group_id": {"x": 1}},
        {"message": [{"type": "text", "data": 5}]},
        {"message": [7]},
        {"time": "now"},
        {"post_type": "zzz"},
    ],
)
def test_wrongly_typed_events_are_malformed(fields: dict[str, object]) -> None:
    event = json.loads(group_message("x"))
    assert well_formed(event)
    event.update(fields)
    assert not well_formed(event)


def _chatter(i: int) -> str:
    return group_message(f"群里随便聊聊 {i}", user_id=70000 + i % 300, at_bot=False)


def _malformed(i: int) -> str:
    if i % 2:
        return "{bad json"
    event = json.loads(group_message("y"))
    event["sender"] = "not a sender"
    return json.dumps(event)


async def test_chatter_and_malformed_floods_do_not_delay_a_reply(start_server: StartServer) -> None:
    """2,000 unaddressed messages and 1,000 malformed events, then one question: on the old
    code the answer waited for NoneBot to check every matcher against each event (> 10 s on
    this box); screened, it comes within a couple of seconds and the admin API counts them."""
    served = start_server()
    async with onebot_client(served) as qq:
        started = time.monotonic()
        for i in range(2000):
            await qq.send(_chatter(i))
        for i in range(1000):
            await qq.send(_malformed(i))
        await qq.send(group_message("你好"))
        assert await qq.wait_replies(1, timeout_s=6), "no reply within 6 s of the flood"
        elapsed_s = time.monotonic() - started
    assert "我是小优" in qq.replies[0]
    assert elapsed_s < 4.0, f"the reply took {elapsed_s:.1f} s after the flood began"
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{served.http}/admin/health", headers=served.admin)
    health = answer.json()
    onebot = health["onebot"]
    assert onebot["unaddressed_messages"] == 2000
    assert onebot["malformed_events"] == 500  # the other 500 are not JSON: counted as frames
    assert onebot["malformed_frames"] == 500
