"""status (superusers only) and cancel (own jobs only) plugins."""

from __future__ import annotations

import asyncio

import pytest
from nonebot.adapters.onebot.v11 import Bot
from nonebug import App

from bot.runtime import BotRuntime
from core.errors import JobCancelled
from core.models.sd import DrawRequest
from tests.bot.conftest import SELF_ID, SUPERUSER_ID, Matching, fake_inference, group_event
from tests.bot.fakes import FakeModels


async def test_status_for_superuser_lists_lanes_jobs_and_models(
    app: App, runtime: BotRuntime
) -> None:
    from bot.plugins.status import status

    inference = fake_inference(runtime)
    inference.gate = asyncio.Event()
    models = runtime.services.models
    assert isinstance(models, FakeModels)
    models.loaded.append(
        {"name": "llm", "provider": "llamacpp", "device": "cpu", "loaded": True, "in_use": 1}
    )
    models.loaded.append({"name": "sd", "provider": "diffusers", "device": "cpu", "loaded": False})
    handle = inference.draw(DrawRequest(prompt="猫"), owner="qq:group:9")
    text = Matching(
        lambda m: (
            "interactive" in str(m)
            and "#1 sd qq:group:9 猫" in str(m)
            and "模型：已加载 1/2" in str(m)
            and "llm [llamacpp@cpu] 已加载 使用中×1" in str(m)
            and "sd [diffusers@cpu] 未加载" in str(m)
        )
    )
    try:
        async with app.test_matcher(status) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event("/status", user_id=int(SUPERUSER_ID))
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, text, result={"message_id": 1})
    finally:
        inference.gate.set()
    await handle
    assert len(text.seen) == 1


async def test_status_for_others_is_short_and_public(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.status import status

    models = runtime.services.models
    assert isinstance(models, FakeModels)
    models.loaded.append({"name": "llm", "provider": "llamacpp", "device": "cpu", "loaded": True})
    models.loaded.append({"name": "sd", "provider": "diffusers", "device": "cpu", "loaded": False})
    async with app.test_matcher(status) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/status")
        ctx.receive_event(bot, event)
        ctx.should_call_send(
            event,
            "小优在线：0 个任务进行中，0 个排队；模型已加载 1/2。详细状态仅超级用户可查看。",
            result={"message_id": 1},
        )
        ctx.should_finished(status)


async def test_cancel_stops_only_own_jobs(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.cancel import cancel

    inference = fake_inference(runtime)
    inference.gate = asyncio.Event()
    mine = inference.draw(DrawRequest(prompt="mine"), owner="qq:group:30003")
    queued_mine = inference.draw(DrawRequest(prompt="mine too"), owner="qq:group:30003")
    theirs = inference.draw(DrawRequest(prompt="theirs"), owner="qq:group:30003")
    runtime.jobs.add("20002", mine)
    runtime.jobs.add("20002", queued_mine)
    runtime.jobs.add("99999", theirs)
    try:
        async with app.test_matcher(cancel) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event("/cancel")
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, "已取消 2 个任务。", result={"message_id": 1})
        for handle in (mine, queued_mine):
            with pytest.raises(JobCancelled):
                await handle.result()
        assert not theirs.done()
    finally:
        inference.gate.set()
    assert await theirs.result() == inference.draw_png
    assert runtime.jobs.active("20002") == []

    async with app.test_matcher(cancel) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/cancel")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "你没有排队中或进行中的任务。", result={"message_id": 1})
