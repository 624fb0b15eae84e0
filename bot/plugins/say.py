"""say: ``/say <text>`` → text to speech → a QQ voice message (WAV as a base64 record)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from nonebot import get_plugin_config, on_command
from nonebot.adapters.onebot.v11 import Message, MessageEvent, MessageSegment
from nonebot.log import logger
from nonebot.matcher import Matcher
from nonebot.params import CommandArg
from nonebot.plugin import PluginMetadata
from pydantic import BaseModel, Field

from bot.events import explicit_command, owner_of, user_key
from bot.gate import enforce_limits
from bot.media import pcm_to_wav
from bot.replies import GENERIC_FAILURE, describe_error
from bot.runtime import get_runtime
from core.errors import XiaoyouError
from core.scheduler import Lane


class SayConfig(BaseModel):
    max_chars: int = Field(200, ge=1, le=2000)
    sample_rate_hz: int = Field(24000, description="16000 or 24000")


class Config(BaseModel):
    say: SayConfig = Field(default_factory=SayConfig)


__plugin_meta__ = PluginMetadata(
    name="say",
    description="把文字读出来，发语音消息",
    usage="/say 大家晚上好",
    type="application",
    config=Config,
    supported_adapters={"~onebot.v11"},
)

config = get_plugin_config(Config).say

say = on_command("say", aliases={"说"}, rule=explicit_command(), priority=10, block=True)


@say.handle()
async def handle_say(
    matcher: Matcher, event: MessageEvent, arg: Annotated[Message, CommandArg()]
) -> None:
    await enforce_limits(matcher, event, "say")  # before any model work, or any reply
    text = arg.extract_plain_text().strip()
    if not text:
        await matcher.finish(f"用法：{__plugin_meta__.usage}")
    if len(text) > config.max_chars:
        await matcher.finish(f"太长了，最多 {config.max_chars} 个字。")
    runtime = get_runtime()
    try:
        handle = runtime.services.inference.speak(
            text, lane=Lane.INTERACTIVE, owner=owner_of(event), sample_rate_hz=config.sample_rate_hz
        )
        runtime.jobs.add(user_key(event), handle)
        chunks = [chunk async for chunk in handle.stream()]
        wav = await asyncio.to_thread(pcm_to_wav, chunks)
    except XiaoyouError as exc:
        logger.warning(f"say failed for {owner_of(event)}: {exc!r}")
        await matcher.finish(describe_error(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in one job must not silence the bot
        logger.opt(exception=exc).error("say job crashed")
        await matcher.finish(GENERIC_FAILURE)
    await matcher.finish(MessageSegment.record(wav))
