"""Who is asking: scheduler owners, quota/job keys and chat-context keys from OneBot events."""

from __future__ import annotations

from nonebot.adapters import Event
from nonebot.adapters.onebot.v11 import GroupMessageEvent, MessageEvent
from nonebot.consts import CMD_START_KEY, PREFIX_KEY
from nonebot.rule import Rule
from nonebot.typing import T_State


def owner_of(event: MessageEvent) -> str:
    """The scheduler's fairness unit: a group, or a user in private chat."""
    if isinstance(event, GroupMessageEvent):
        return f"qq:group:{event.group_id}"
    return f"qq:user:{event.user_id}"


def user_key(event: MessageEvent) -> str:
    """The person behind a request (job tracking, cooldowns and quotas follow the user)."""
    return str(event.user_id)


def conversation_key(event: MessageEvent) -> str:
    """Chat context is shared by a group, and private per user."""
    if isinstance(event, GroupMessageEvent):
        return f"group:{event.group_id}"
    return f"user:{event.user_id}"


def display_name(event: MessageEvent) -> str:
    sender = event.sender
    return sender.card or sender.nickname or str(event.user_id)


async def _explicit(event: Event, state: T_State) -> bool:
    prefix = state.get(PREFIX_KEY) or {}
    return bool(prefix.get(CMD_START_KEY)) or event.is_tome()


def explicit_command() -> Rule:
    """With an empty command start configured, ``画得真好`` in a group would run ``/画``.
    Commands therefore need a non-empty command start (``/draw``) or to be addressed to the
    bot (``@小优 draw ...``, private chat, nickname)."""
    return Rule(_explicit)
