"""Per-user and per-group rate limits of chat and /say (issue #16 item 10), through NoneBot.

Defaults (bot.limits): chat 5 at once per user then 10 a minute, 10 at once per group then 30
a minute; /say 2 per user, 4 per group. Over a limit: one short reply, then silence, and no
model work either way; superusers are exempt."""

from __future__ import annotations

from typing import Any

from nonebot.adapters.onebot.v11 import Bot, GroupMessageEvent, MessageSegment
from nonebug import App

from bot.limits import RateLimiter
from bot.runtime import BotRuntime
from tests.bot.conftest import (
    SELF_ID,
    SUPERUSER_ID,
    FakeClock,
    Matching,
    fake_inference,
    group_event,
)

ANSWER = "你好，我是小优。"
TOO_FAST = "你发得太快了，请 6 秒后再试。"  # 10 a minute: a token every 6 s
GROUP_BUSY = "本群现在找我的人太多了，请 2 秒后再试。"  # 30 a minute: every 2 s


async def _send(app: App, matcher: Any, event: GroupMessageEvent, reply: Any | None) -> None:
    async with app.test_matcher(matcher) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        ctx.receive_event(bot, event)
        if reply is not None:
            ctx.should_call_send(event, reply, result={"message_id": 1})
        ctx.should_finished(matcher)


def _limited(runtime: BotRuntime, clock: FakeClock) -> None:
    runtime.limits = RateLimiter(clock=clock)


async def test_a_fast_user_is_told_once_and_costs_no_model_work(
    app: App, runtime: BotRuntime, clock: FakeClock
) -> None:
    from bot.plugins.chat import chat

    _limited(runtime, clock)
    for _ in range(5):
        await _send(app, chat, group_event("在吗"), ANSWER)
    await _send(app, chat, group_event("在吗"), TOO_FAST)
    for _ in range(5):  # no reply storm: nothing at all until a token is back
        await _send(app, chat, group_event("在吗"), None)
    assert len(fake_inference(runtime).calls) == 5
    clock.now_s += 6.0
    await _send(app, chat, group_event("在吗"), ANSWER)
    await _send(app, chat, group_event("在吗"), TOO_FAST)  # a new streak is told again
    assert len(fake_inference(runtime).calls) == 6
    assert runtime.limits.snapshot()["limited"] == {"chat": 7}


async def test_a_busy_group_is_told_once_for_everybody(
    app: App, runtime: BotRuntime, clock: FakeClock
) -> None:
    from bot.plugins.chat import chat

    _limited(runtime, clock)
    for user in range(10):
        await _send(app, chat, group_event("大家好", user_id=50000 + user), ANSWER)
    await _send(app, chat, group_event("大家好", user_id=50010), GROUP_BUSY)
    await _send(app, chat, group_event("大家好", user_id=50011), None)  # not told again
    other_group = group_event("大家好", user_id=50012, group_id=40004)
    await _send(app, chat, other_group, ANSWER)  # another group has its own bucket
    assert len(fake_inference(runtime).calls) == 11


async def test_say_has_its_own_tighter_limit(
    app: App, runtime: BotRuntime, clock: FakeClock
) -> None:
    from bot.plugins.say import say

    _limited(runtime, clock)
    record = Matching(lambda m: isinstance(m, MessageSegment) and m.type == "record")
    for _ in range(2):
        await _send(app, say, group_event("/say 大家好"), record)
    await _send(app, say, group_event("/say 大家好"), "你发得太快了，请 15 秒后再试。")
    await _send(app, say, group_event("/say 大家好"), None)
    assert [c.method for c in fake_inference(runtime).calls] == ["speak", "speak"]


async def test_superusers_are_exempt(app: App, runtime: BotRuntime, clock: FakeClock) -> None:
    from bot.plugins.chat import chat

    _limited(runtime, clock)
    for _ in range(12):
        await _send(app, chat, group_event("测试", user_id=int(SUPERUSER_ID)), ANSWER)
    assert len(fake_inference(runtime).calls) == 12
