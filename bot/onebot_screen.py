"""Cheap checks on raw OneBot v11 events, before NoneBot builds an event or runs a matcher.

Measured with ``bench/onebot_loop_lag.py`` under cProfile: every event that reaches NoneBot
costs about 20 anyio tasks and a dependency-injection pass for each matcher's rule and
permission (``nonebot.dependencies``, ``anyio`` task groups: 60-70 % of the loop's time), and
that happens for every message of a busy group although no xiaoyou plugin reads a message
not addressed to the bot. :func:`addressed` is a conservative superset of what can reach a
plugin: private messages, an ``@`` of the bot anywhere, any reply (NoneBot asks QQ whose
message it answers), and text that starts with a nickname or a non-empty command start.
:func:`well_formed` rejects the events whose fields have the wrong JSON types, which
NoneBot would otherwise fail to parse as any message model and pass on as a bare event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_POST_TYPES = {"message", "message_sent", "notice", "request", "meta_event"}
_MESSAGE_TYPES = {"private", "group"}
_ID = (int, str)


def _segments_ok(message: Any) -> bool:
    if isinstance(message, str):
        return True
    if not isinstance(message, list):
        return False
    return all(
        isinstance(s, dict) and isinstance(s.get("type"), str) and isinstance(s.get("data"), dict)
        for s in message
    )


def well_formed(event: dict[str, Any]) -> bool:
    """The fields every OneBot v11 event has, of the right JSON types (no parsing)."""
    if event.get("post_type") not in _POST_TYPES:
        return False
    if not isinstance(event.get("time"), int) or not isinstance(event.get("self_id"), _ID):
        return False
    if event["post_type"] not in ("message", "message_sent"):
        return True
    message_type = event.get("message_type")
    return (
        message_type in _MESSAGE_TYPES
        and isinstance(event.get("message_id"), int)
        and isinstance(event.get("user_id"), _ID)
        and isinstance(event.get("sender"), dict)
        and (message_type != "group" or isinstance(event.get("group_id"), _ID))
        and _segments_ok(event.get("message"))
    )


def _leading_text(message: Any) -> str:
    if isinstance(message, str):
        return message
    texts = []
    for segment in message:
        if segment.get("type") != "text":
            break
        texts.append(str(segment["data"].get("text", "")))
    return "".join(texts)


def addressed(
    event: dict[str, Any], *, nicknames: Iterable[str], command_starts: Iterable[str]
) -> bool:
    """Whether a well-formed message event may concern a plugin (see the module docstring).
    Every other post type (notices, requests, meta events) is passed on."""
    if event.get("post_type") != "message" or event.get("message_type") != "group":
        return True
    message = event["message"]
    self_id = str(event.get("self_id"))
    if isinstance(message, str):
        if "[CQ:reply" in message or f"[CQ:at,qq={self_id}" in message:
            return True
    else:
        for segment in message:
            kind = segment["type"]
            if kind == "reply" or (kind == "at" and str(segment["data"].get("qq")) == self_id):
                return True
    text = _leading_text(message).lstrip().casefold()
    if any(start and text.startswith(start.casefold()) for start in command_starts):
        return True
    return any(name and text.startswith(name.casefold()) for name in nicknames)
