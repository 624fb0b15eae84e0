"""see: an image (in the message or in the message replied to) plus a question → VL model.

Triggers when the bot is addressed and an image is present. Incoming image URLs expire
quickly, so they are downloaded at once (size limit, timeout) with ``get_image`` as fallback.
Without configured weights it answers at once that the feature is not set up.
"""

from __future__ import annotations

from pathlib import Path

from nonebot import get_plugin_config, on_message
from nonebot.adapters.onebot.v11 import Bot, MessageEvent, MessageSegment
from nonebot.log import logger
from nonebot.matcher import Matcher
from nonebot.plugin import PluginMetadata
from nonebot.rule import Rule, to_me
from pydantic import BaseModel, Field

from bot.events import owner_of
from bot.media import ImageTooLarge, fetch_image
from bot.replies import GENERIC_FAILURE, describe_error
from bot.runtime import get_runtime
from core.errors import ProtocolError, XiaoyouError
from core.scheduler import Lane


class SeeConfig(BaseModel):
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    download_timeout_s: float = Field(10.0, gt=0)
    default_question: str = "请描述这张图片。"
    max_reply_chars: int = Field(1500, ge=50)
    allow_private_urls: bool = Field(
        False, description="fetch image URLs on loopback/private networks (SSRF guard off)"
    )
    local_image_dirs: list[Path] = Field(
        default_factory=list,
        description="directories a get_image file path may be read from (shared with the"
        " OneBot implementation); empty: never read local files",
    )


class Config(BaseModel):
    see: SeeConfig = Field(default_factory=SeeConfig)


__plugin_meta__ = PluginMetadata(
    name="see",
    description="看图回答问题：发图并 @ 我，或回复一张图片问我",
    usage="@小优 [图片] 这是什么？\n（回复一条带图的消息）@小优 图里有几个人？",
    type="application",
    config=Config,
    supported_adapters={"~onebot.v11"},
)

config = get_plugin_config(Config).see


NOT_CONFIGURED = "看图功能未配置：管理员还没有设置视觉模型（models.vl.model_dir）。"


def first_image(event: MessageEvent) -> MessageSegment | None:
    """The first image in the message itself, else in the message it replies to."""
    for seg in event.message:
        if seg.type == "image":
            return seg
    if event.reply is not None:
        for seg in event.reply.message:
            if seg.type == "image":
                return seg
    return None


async def _has_image(event: MessageEvent) -> bool:
    return first_image(event) is not None


see = on_message(rule=to_me() & Rule(_has_image), priority=50, block=True)


@see.handle()
async def handle_see(bot: Bot, matcher: Matcher, event: MessageEvent) -> None:
    segment = first_image(event)
    if segment is None:  # the rule guarantees one; keep mypy and readers honest
        await matcher.finish()
    runtime = get_runtime()
    if not runtime.services.inference.configured("vl"):
        await matcher.finish(MessageSegment.reply(event.message_id) + NOT_CONFIGURED)
    question = event.get_plaintext().strip() or config.default_question
    try:
        image = await fetch_image(
            bot,
            runtime.http,
            segment,
            max_bytes=config.max_image_bytes,
            timeout_s=config.download_timeout_s,
            allow_private=config.allow_private_urls,
            local_dirs=config.local_image_dirs,
        )
    except ImageTooLarge:
        limit_mb = config.max_image_bytes / 1024 / 1024
        await matcher.finish(
            MessageSegment.reply(event.message_id) + f"图片太大了（上限 {limit_mb:.1f} MB）。"
        )
    except ProtocolError as exc:
        logger.warning(f"see: cannot fetch image: {exc!r}")
        await matcher.finish(
            MessageSegment.reply(event.message_id) + "图片拿不到了（可能已过期），请重新发一次。"
        )
    try:
        answer = await runtime.services.inference.see(
            image, question, owner=owner_of(event), lane=Lane.INTERACTIVE
        )
    except XiaoyouError as exc:
        logger.warning(f"see failed for {owner_of(event)}: {exc!r}")
        await matcher.finish(MessageSegment.reply(event.message_id) + describe_error(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in one job must not silence the bot
        logger.opt(exception=exc).error("see job crashed")
        await matcher.finish(MessageSegment.reply(event.message_id) + GENERIC_FAILURE)
    answer = answer.strip() or "（我没看出什么来）"
    if len(answer) > config.max_reply_chars:
        answer = answer[: config.max_reply_chars - 1] + "…"
    await matcher.finish(MessageSegment.reply(event.message_id) + answer)
