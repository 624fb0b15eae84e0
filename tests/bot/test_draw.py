"""draw plugin: queue position reply, JPEG result, quotas, blocked words, errors, parsing."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any, cast

from nonebot.adapters.onebot.v11 import Bot, MessageSegment
from nonebug import App
from PIL import Image

from bot.replies import MODEL_FAILURE
from bot.runtime import BotRuntime
from core.errors import InferenceError
from core.models.sd import DrawRequest
from core.scheduler import Lane, Scheduler, SchedulerSettings
from tests.bot.conftest import (
    DRAW_COOLDOWN_S,
    SELF_ID,
    FakeClock,
    Matching,
    anything,
    fake_inference,
    group_event,
)
from tests.bot.fakes import FakeInference, png_bytes


def _is_jpeg_image(message: object, max_bytes: int) -> bool:
    segments = list(message)  # type: ignore[call-overload]
    image = [s for s in segments if s.type == "image"]
    if len(image) != 1:
        return False
    data = base64.b64decode(image[0].data["file"].removeprefix("base64://"))
    with Image.open(io.BytesIO(data)) as img:
        return img.format == "JPEG" and len(data) <= max_bytes


def test_parse_prompt_and_blocked_words() -> None:
    from bot.plugins.draw import blocked_word, parse_prompt

    assert parse_prompt(" 一只猫 --neg 模糊, 低质量 ") == ("一只猫", "模糊, 低质量")
    assert parse_prompt("a cat") == ("a cat", "")
    assert blocked_word("A Forbidden thing", ["forbidden"]) == "forbidden"
    assert blocked_word("fine", ["forbidden", ""]) is None


async def test_draw_replies_position_then_jpeg(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.draw import draw

    inference = fake_inference(runtime)
    inference.draw_png = png_bytes(size_px=1500)  # bigger than max_side_px: gets shrunk
    async with app.test_matcher(draw) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/draw 一只橘猫 --neg 模糊")
        ctx.receive_event(bot, event)
        ctx.should_call_send(
            event,
            MessageSegment.reply(event.message_id)
            + "已加入绘图队列（任务 #1），马上开始。发 /cancel 可取消。",
            result={"message_id": 1},
        )
        ctx.should_call_send(event, Matching(anything), result={"message_id": 2})
        ctx.should_finished(draw)
    call = inference.calls[-1]
    assert call.lane is Lane.BACKGROUND
    assert call.owner == "qq:group:30003"
    request = call.args[0]
    assert (request.prompt, request.negative_prompt) == ("一只橘猫", "模糊")
    assert runtime.quotas.used_today("draw:20002") == 1


async def test_draw_result_is_compressed_jpeg(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.draw import draw

    fake_inference(runtime).draw_png = png_bytes(size_px=1500)
    image = Matching(lambda m: _is_jpeg_image(m, max_bytes=32 * 1024))
    async with app.test_matcher(draw) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/画 海边")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, Matching(anything), result={"message_id": 1})
        ctx.should_call_send(event, image, result={"message_id": 2})
    assert len(image.seen) == 1


async def test_second_draw_waits_behind_first(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.draw import draw

    inference = fake_inference(runtime)
    inference.gate = asyncio.Event()
    first = inference.draw(DrawRequest(prompt="first"), owner="qq:group:1")  # runs, holds the cpu
    second = inference.draw(DrawRequest(prompt="second"), owner="qq:group:2")  # queued
    try:
        async with app.test_matcher(draw) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event("/draw 第二张")
            ctx.receive_event(bot, event)
            ctx.should_call_send(
                event,
                MessageSegment.reply(event.message_id)
                + "已加入绘图队列（任务 #3），前面还有 1 个任务。发 /cancel 可取消。",
                result={"message_id": 1},
            )
            ctx.should_call_send(event, Matching(anything), result={"message_id": 2})

            async def open_gate() -> None:
                await asyncio.sleep(0.05)
                assert inference.gate is not None
                inference.gate.set()

            opener = asyncio.get_running_loop().create_task(open_gate(), name="test-open-gate")
        await opener
        assert await first.result() == inference.draw_png
        assert await second.result() == inference.draw_png
    finally:
        inference.gate.set()


async def test_cooldown_and_daily_quota(app: App, runtime: BotRuntime, clock: FakeClock) -> None:
    from bot.plugins.draw import draw

    async def draw_once(expect_ok: bool, refusal: str = "") -> None:
        async with app.test_matcher(draw) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event("/draw 猫")
            ctx.receive_event(bot, event)
            if expect_ok:
                ctx.should_call_send(event, Matching(anything), result={"message_id": 1})
                ctx.should_call_send(event, Matching(anything), result={"message_id": 2})
            else:
                ctx.should_call_send(event, refusal, result={"message_id": 1})
            ctx.should_finished(draw)

    await draw_once(True)
    await draw_once(False, f"冷却中，请 {DRAW_COOLDOWN_S:.0f} 秒后再试")
    clock.now_s += DRAW_COOLDOWN_S + 1
    await draw_once(True)
    clock.now_s += DRAW_COOLDOWN_S + 1
    await draw_once(False, "今天的 2 次额度已用完，明天再来吧")
    assert len(fake_inference(runtime).calls) == 2


async def test_blocked_word_and_empty_prompt(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.draw import __plugin_meta__, draw

    for text, reply in (
        ("/draw something FORBIDDEN", "描述里有不允许的内容，换个说法吧。"),
        ("/draw", f"用法：\n{__plugin_meta__.usage}"),
    ):
        async with app.test_matcher(draw) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event(text)
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, reply, result={"message_id": 1})
    assert fake_inference(runtime).calls == []


async def test_failed_draw_gets_error_reply(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.draw import draw

    fake_inference(runtime).errors["draw"] = InferenceError("out of memory")
    async with app.test_matcher(draw) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/draw 猫")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, Matching(anything), result={"message_id": 1})
        ctx.should_call_send(
            event,
            MessageSegment.reply(event.message_id) + MODEL_FAILURE,
            result={"message_id": 2},
        )
        ctx.should_finished(draw)
    # a failed drawing costs no quota and starts no cooldown: the user may try again at once
    assert runtime.quotas.used_today("draw:20002") == 0
    runtime.quotas.check("draw:20002", cooldown_s=DRAW_COOLDOWN_S, daily_limit=2)


async def test_failed_draw_keeps_an_earlier_cooldown(
    app: App, runtime: BotRuntime, clock: FakeClock
) -> None:
    from bot.plugins.draw import draw

    async def draw_once() -> None:
        async with app.test_matcher(draw) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event("/draw 猫")
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, Matching(anything), result={"message_id": 1})
            ctx.should_call_send(event, Matching(anything), result={"message_id": 2})

    await draw_once()  # succeeds
    clock.now_s += DRAW_COOLDOWN_S + 1
    fake_inference(runtime).errors["draw"] = InferenceError("out of memory")
    await draw_once()  # fails: refunded
    assert runtime.quotas.used_today("draw:20002") == 1


async def test_draw_without_weights_says_so_at_once(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.draw import NOT_CONFIGURED, draw

    fake_inference(runtime).not_configured.add("sd")
    async with app.test_matcher(draw) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/draw 一只橘猫")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, NOT_CONFIGURED, result={"message_id": 1})
        ctx.should_finished(draw)
    assert fake_inference(runtime).calls == []
    assert runtime.quotas.used_today("draw:20002") == 0


async def test_full_queue_gets_polite_reply(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.draw import draw

    await runtime.services.scheduler.stop()
    async with app.test_matcher(draw) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/draw 猫")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "服务正在关闭或维护，请稍后再试。", result={"message_id": 1})
    assert runtime.quotas.used_today("draw:20002") == 0  # a refused job costs no quota


async def test_real_full_queue_gets_polite_reply(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.draw import draw

    old = runtime.services.scheduler
    await old.stop()
    settings = SchedulerSettings(resources={"cpu": 1}, owner_queue_limit=1, prewarm=False)
    scheduler = Scheduler(settings)
    await scheduler.start()
    inference = FakeInference(scheduler, gate=asyncio.Event())
    runtime.services.scheduler = scheduler
    runtime.services.inference = cast(Any, inference)
    owner = "qq:group:30003"
    try:
        running = inference.draw(DrawRequest(prompt="a"), owner=owner)  # holds the only cpu
        queued = inference.draw(DrawRequest(prompt="b"), owner=owner)  # the owner's one queued slot
        async with app.test_matcher(draw) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event("/draw 猫")
            ctx.receive_event(bot, event)
            ctx.should_call_send(
                event, "现在排队的请求太多了（上限 1），请稍后再试～", result={"message_id": 1}
            )
            ctx.should_finished(draw)
        assert inference.gate is not None
        inference.gate.set()
        assert [await running, await queued] == [inference.draw_png] * 2
        assert runtime.quotas.used_today("draw:20002") == 0
    finally:
        await scheduler.stop()


async def test_bare_alias_in_group_chatter_does_not_draw(app: App, runtime: BotRuntime) -> None:
    """command_start includes "" (the default): "画得真好" said in a group is not a command."""
    from bot.plugins.draw import draw

    async with app.test_matcher(draw) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        ctx.receive_event(bot, group_event("画得真好", to_me=False))
        ctx.should_not_pass_rule(draw)
    async with app.test_matcher(draw) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/画 猫", to_me=False)
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, Matching(anything), result={"message_id": 1})
        ctx.should_call_send(event, Matching(anything), result={"message_id": 2})
    assert [c.args[0].prompt for c in fake_inference(runtime).calls] == ["猫"]
