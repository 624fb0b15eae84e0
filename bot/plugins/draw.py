"""draw: ``/draw <prompt> [--neg <negative prompt>]`` (alias ``/画``) → Stable Diffusion.

Runs in the BACKGROUND lane. The user gets an immediate "queued, N ahead of you" reply, then
the picture as a base64 JPEG compressed to stay well under OneBot send-size timeouts. A
blocked-word list, a per-user cooldown and a daily quota guard the GPU; a drawing that fails
or is cancelled gives its quota back. Without configured weights the command answers at once
that drawing is not set up (no queue message, no quota used).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from nonebot import get_plugin_config, on_command
from nonebot.adapters.onebot.v11 import Message, MessageEvent, MessageSegment
from nonebot.log import logger
from nonebot.matcher import Matcher
from nonebot.params import CommandArg
from nonebot.plugin import PluginMetadata
from pydantic import BaseModel, Field

from bot.events import explicit_command, owner_of, user_key
from bot.media import compress_image
from bot.replies import GENERIC_FAILURE, describe_error
from bot.runtime import get_runtime
from core.errors import XiaoyouError
from core.models.sd import DrawRequest
from core.scheduler import JobStatus, Lane


class DrawConfig(BaseModel):
    width: int = Field(512, ge=64, le=2048, multiple_of=8)
    height: int = Field(512, ge=64, le=2048, multiple_of=8)
    steps: int = Field(20, ge=1, le=150)
    guidance: float = Field(7.0, ge=0.0, le=30.0)
    max_prompt_chars: int = Field(500, ge=1)
    default_negative_prompt: str = "lowres, bad anatomy, watermark, text"
    blocked_words: list[str] = Field(
        default_factory=list, description="case-insensitive substrings"
    )
    cooldown_s: float = Field(60.0, ge=0)
    daily_quota: int = Field(20, ge=0, description="drawings per user per day; 0: unlimited")
    # NapCat's send timeout is 10 s + size / 256 KB/s; 400 KB keeps us far from it.
    max_image_bytes: int = Field(400 * 1024, ge=16 * 1024)
    max_side_px: int = Field(1024, ge=256)


class Config(BaseModel):
    draw: DrawConfig = Field(default_factory=DrawConfig)


__plugin_meta__ = PluginMetadata(
    name="draw",
    description="用 Stable Diffusion 画图（后台排队）",
    usage="/draw 一只橘猫 --neg 模糊\n/画 海边的日落",
    type="application",
    config=Config,
    supported_adapters={"~onebot.v11"},
)

config = get_plugin_config(Config).draw

draw = on_command("draw", aliases={"画"}, rule=explicit_command(), priority=10, block=True)

NOT_CONFIGURED = "画图功能未配置：管理员还没有设置 Stable Diffusion 模型（models.sd.model_dir）。"
_NEG_FLAG = re.compile(r"(?:^|\s)(?:--neg|--negative|负面[:：]?)\s*", re.IGNORECASE)


def parse_prompt(text: str) -> tuple[str, str]:
    """``"a cat --neg blurry"`` → ``("a cat", "blurry")``."""
    parts = _NEG_FLAG.split(text.strip(), maxsplit=1)
    prompt = parts[0].strip()
    negative = parts[1].strip() if len(parts) > 1 else ""
    return prompt, negative


def blocked_word(text: str, words: list[str]) -> str | None:
    lowered = text.casefold()
    return next((w for w in words if w and w.casefold() in lowered), None)


async def _refund(quota_key: str, previous_use: float | None) -> None:
    """A failed or cancelled drawing costs no quota."""
    quotas = get_runtime().quotas
    quotas.refund(quota_key, previous_use)
    await quotas.persist()


@draw.handle()
async def handle_draw(
    matcher: Matcher, event: MessageEvent, arg: Annotated[Message, CommandArg()]
) -> None:
    runtime = get_runtime()
    if not runtime.services.inference.configured("sd"):
        await matcher.finish(NOT_CONFIGURED)
    prompt, negative = parse_prompt(arg.extract_plain_text())
    if not prompt:
        await matcher.finish(f"用法：\n{__plugin_meta__.usage}")
    if len(prompt) + len(negative) > config.max_prompt_chars:
        await matcher.finish(f"描述太长了（最多 {config.max_prompt_chars} 字）。")
    if blocked_word(f"{prompt}\n{negative}", config.blocked_words) is not None:
        await matcher.finish("描述里有不允许的内容，换个说法吧。")
    quota_key = f"draw:{user_key(event)}"
    request = DrawRequest(
        prompt=prompt,
        negative_prompt=negative or config.default_negative_prompt,
        width=config.width,
        height=config.height,
        steps=config.steps,
        guidance=config.guidance,
    )
    try:
        runtime.quotas.check(
            quota_key, cooldown_s=config.cooldown_s, daily_limit=config.daily_quota
        )
        handle = runtime.services.inference.draw(
            request, owner=owner_of(event), lane=Lane.BACKGROUND
        )
    except XiaoyouError as exc:  # QuotaExceeded, QueueFull, SchedulerClosed, ...
        await matcher.finish(describe_error(exc))
    previous_use = runtime.quotas.record(quota_key)
    runtime.jobs.add(user_key(event), handle)
    await runtime.quotas.persist()
    ahead = runtime.services.scheduler.position(handle)  # queued jobs that start before it
    where = f"前面还有 {ahead} 个任务" if handle.status is JobStatus.QUEUED else "马上开始"
    await matcher.send(
        MessageSegment.reply(event.message_id)
        + f"已加入绘图队列（任务 #{handle.id}），{where}。发 /cancel 可取消。"
    )
    try:
        png = await handle.result()
        jpeg = await asyncio.to_thread(
            compress_image, png, max_bytes=config.max_image_bytes, max_side_px=config.max_side_px
        )
    except XiaoyouError as exc:
        logger.warning(f"draw #{handle.id} failed: {exc!r}")
        await _refund(quota_key, previous_use)
        await matcher.finish(MessageSegment.reply(event.message_id) + describe_error(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in one job must not silence the bot
        logger.opt(exception=exc).error(f"draw #{handle.id} crashed")
        await _refund(quota_key, previous_use)
        await matcher.finish(MessageSegment.reply(event.message_id) + GENERIC_FAILURE)
    await matcher.finish(MessageSegment.reply(event.message_id) + MessageSegment.image(jpeg))
