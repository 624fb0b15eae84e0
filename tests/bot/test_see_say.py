"""see and say plugins: image download with get_image fallback, VL answer, TTS → record."""

from __future__ import annotations

import base64
import io
import wave
from typing import Any

import httpx
from nonebot.adapters.onebot.v11 import Bot, Message, MessageSegment
from nonebot.adapters.onebot.v11.event import Reply, Sender
from nonebug import App

from bot.replies import MODEL_FAILURE
from bot.runtime import BotRuntime
from core.errors import InferenceError
from core.scheduler import Lane
from tests.bot.conftest import SELF_ID, ImageServer, Matching, fake_inference, group_event
from tests.bot.fakes import png_bytes

IMAGE_URL = "https://multimedia.nt.qq.com.cn/download?appid=1407&fileid=abc"


def _image_message(text: str) -> Message:
    return MessageSegment.text(text) + MessageSegment(
        "image", {"file": "abc.image", "url": IMAGE_URL}
    )


async def test_see_downloads_image_and_answers(
    app: App, runtime: BotRuntime, images: ImageServer
) -> None:
    from bot.plugins.see import see

    picture = png_bytes(16)
    images.routes[IMAGE_URL] = httpx.Response(200, content=picture)
    async with app.test_matcher(see) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event(_image_message("这是什么？"))
        ctx.receive_event(bot, event)
        ctx.should_call_send(
            event,
            MessageSegment.reply(event.message_id) + "一个红色的方块",
            result={"message_id": 1},
        )
        ctx.should_finished(see)
    call = fake_inference(runtime).calls[-1]
    assert call.method == "see"
    assert call.args == (picture, "这是什么？")
    assert (call.lane, call.owner) == (Lane.INTERACTIVE, "qq:group:30003")


async def test_see_expired_url_falls_back_to_get_image(
    app: App, runtime: BotRuntime, images: ImageServer
) -> None:
    from bot.plugins.see import see

    picture = png_bytes(8)
    replied = Reply(
        time=0,
        message_type="group",
        message_id=555,
        real_id=555,
        sender=Sender(user_id=777, nickname="someone"),
        message=Message(MessageSegment("image", {"file": "abc.image", "url": IMAGE_URL})),
    )
    async with app.test_matcher(see) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("图里有什么", reply=replied)
        ctx.receive_event(bot, event)
        ctx.should_call_api(
            "get_image",
            {"file": "abc.image", "_timeout": 2.0},
            result={"file": "", "base64": base64.b64encode(picture).decode()},
        )
        ctx.should_call_send(
            event,
            MessageSegment.reply(event.message_id) + "一个红色的方块",
            result={"message_id": 1},
        )
    assert images.requests == [IMAGE_URL]  # tried the URL first
    assert fake_inference(runtime).calls[-1].args == (picture, "图里有什么")


async def test_see_too_large_image(app: App, runtime: BotRuntime, images: ImageServer) -> None:
    from bot.plugins.see import see

    images.routes[IMAGE_URL] = httpx.Response(200, content=b"x" * 5000)  # limit is 4096
    async with app.test_matcher(see) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event(_image_message("看看"))
        ctx.receive_event(bot, event)
        ctx.should_call_send(
            event,
            MessageSegment.reply(event.message_id) + "图片太大了（上限 0.0 MB）。",
            result={"message_id": 1},
        )
    assert fake_inference(runtime).calls == []


async def test_see_unrecoverable_image(app: App, runtime: BotRuntime, images: ImageServer) -> None:
    from bot.plugins.see import see

    async with app.test_matcher(see) as ctx:  # URL expired; get_image only has the same URL
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event(_image_message("看看"))
        ctx.receive_event(bot, event)
        ctx.should_call_api(
            "get_image", {"file": "abc.image", "_timeout": 2.0}, result={"url": IMAGE_URL}
        )
        ctx.should_call_send(
            event,
            MessageSegment.reply(event.message_id) + "图片拿不到了（可能已过期），请重新发一次。",
            result={"message_id": 1},
        )
    assert fake_inference(runtime).calls == []


async def test_see_model_failure_gets_error_reply(
    app: App, runtime: BotRuntime, images: ImageServer
) -> None:
    from bot.plugins.see import see

    images.routes[IMAGE_URL] = httpx.Response(200, content=png_bytes(8))
    fake_inference(runtime).errors["see"] = InferenceError("vision model crashed")
    async with app.test_matcher(see) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event(_image_message(""))
        ctx.receive_event(bot, event)
        ctx.should_call_send(
            event,
            MessageSegment.reply(event.message_id) + MODEL_FAILURE,
            result={"message_id": 1},
        )
    assert fake_inference(runtime).calls[-1].args[1] == "请描述这张图片。"


async def test_see_ignores_images_not_addressed_to_bot(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.see import see

    async with app.test_matcher(see) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        ctx.receive_event(bot, group_event(_image_message("哈哈"), to_me=False))
        ctx.should_not_pass_rule(see)


def _is_wav_record(message: Any) -> bool:
    segments = list(message) if isinstance(message, Message) else [message]
    if len(segments) != 1 or segments[0].type != "record":
        return False
    data = base64.b64decode(segments[0].data["file"].removeprefix("base64://"))
    with wave.open(io.BytesIO(data)) as wav:
        return bool(
            wav.getframerate() == 16000 and wav.getnchannels() == 1 and wav.getnframes() == 3200
        )


async def test_say_sends_voice_record(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.say import say

    record = Matching(_is_wav_record)
    async with app.test_matcher(say) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("/say 大家好")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, record, result={"message_id": 1})
        ctx.should_finished(say)
    call = fake_inference(runtime).calls[-1]
    assert (call.method, call.args, call.lane) == ("speak", ("大家好", 16000), Lane.INTERACTIVE)


async def test_say_rejects_long_text_and_reports_failures(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.say import say

    fake_inference(runtime).errors["speak"] = InferenceError("no voice")
    for text, reply in (
        ("/say " + "长" * 21, "太长了，最多 20 个字。"),
        ("/say 你好", MODEL_FAILURE),
    ):
        async with app.test_matcher(say) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event(text)
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, reply, result={"message_id": 1})
    assert len(fake_inference(runtime).calls) == 1


async def test_see_without_weights_says_so_at_once(
    app: App, runtime: BotRuntime, images: ImageServer
) -> None:
    from bot.plugins.see import NOT_CONFIGURED, see

    images.routes[IMAGE_URL] = httpx.Response(200, content=png_bytes(8))
    fake_inference(runtime).not_configured.add("vl")
    async with app.test_matcher(see) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event(_image_message("这是什么？"))
        ctx.receive_event(bot, event)
        ctx.should_call_send(
            event, MessageSegment.reply(event.message_id) + NOT_CONFIGURED, result={"message_id": 1}
        )
        ctx.should_finished(see)
    assert fake_inference(runtime).calls == [] and images.requests == []
