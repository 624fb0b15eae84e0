"""The plugins' admission check before model work: the rate limits of :mod:`bot.limits`."""

from __future__ import annotations

from typing import Literal

from nonebot import get_driver
from nonebot.adapters.onebot.v11 import GroupMessageEvent, MessageEvent
from nonebot.matcher import Matcher

from bot.limits import Verdict, limited_reply
from bot.runtime import get_runtime

Feature = Literal["chat", "say"]


async def enforce_limits(matcher: Matcher, event: MessageEvent, feature: Feature) -> None:
    """Return when ``event`` may use ``feature``; otherwise finish the matcher, with one
    short reply for the first refused message of a streak and silently after it."""
    runtime = get_runtime()
    limits = runtime.services.settings.bot.limits
    user = str(event.user_id)
    if limits.exempt_superusers and user in get_driver().config.superusers:
        return
    group = str(event.group_id) if isinstance(event, GroupMessageEvent) else None
    limit = limits.chat if feature == "chat" else limits.say
    decision = runtime.limits.take(feature, limit, user=user, group=group)
    if decision.verdict is Verdict.TELL:
        await matcher.finish(limited_reply(decision))
    if decision.verdict is Verdict.SILENT:
        await matcher.finish()
