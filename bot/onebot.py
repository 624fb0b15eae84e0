"""The OneBot v11 adapter as xiaoyou registers it: constant-time credential checks.

The upstream adapter compares the access token (and the HTTP POST signature) with ``!=``,
whose run time depends on how many leading characters match. This subclass keeps every other
behaviour and compares with :func:`hmac.compare_digest`. It also cuts incoming messages to
``bot.max_message_chars`` before NoneBot parses them (no plugin or model sees more), and
drops malformed events and group chatter not addressed to the bot before NoneBot parses them
or runs a matcher (``bot.screen_unaddressed``; :mod:`bot.onebot_screen`).
"""

from __future__ import annotations

import hmac
import json
from typing import Any, ClassVar, cast

from nonebot.adapters.onebot.utils import get_auth_bearer
from nonebot.adapters.onebot.v11 import Adapter as OneBotV11Adapter
from nonebot.adapters.onebot.v11 import Event
from nonebot.drivers import Request, Response, WebSocket
from nonebot.log import logger

from bot.onebot_screen import addressed, well_formed


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


DEFAULT_MAX_MESSAGE_CHARS = 4000
MAX_SEGMENTS = 100  # text, faces, images, ats of one QQ message; each costs a model validation


def _cap_message(json_data: dict[str, Any], max_chars: int) -> bool:
    """Cut an incoming message to ``max_chars`` characters of text and MAX_SEGMENTS segments,
    in place, before NoneBot parses it; True when it was cut."""
    message = json_data.get("message")
    cut = False
    if isinstance(message, str):
        if len(message) > max_chars:
            json_data["message"] = message[:max_chars]
            cut = True
    elif isinstance(message, list):
        if len(message) > MAX_SEGMENTS:
            del message[MAX_SEGMENTS:]
            cut = True
        budget = max_chars
        for segment in message:
            data = segment.get("data") if isinstance(segment, dict) else None
            if not isinstance(data, dict) or not isinstance(data.get("text"), str):
                continue
            text: str = data["text"]
            if len(text) > budget:
                text = data["text"] = text[: max(budget, 0)]
                cut = True
            budget -= len(text)
    raw = json_data.get("raw_message")
    if isinstance(raw, str) and len(raw) > max_chars:
        json_data["raw_message"] = raw[:max_chars]
        cut = True
    return cut


def _every_so_often(count: int) -> bool:
    return count in (1, 10, 100) or count % 1000 == 0


class _ScreenedSocket:
    """The OneBot WebSocket as the adapter sees it, minus frames that are not JSON objects:
    upstream, one malformed frame ended the bot's session (and each logged a traceback)."""

    def __init__(self, websocket: WebSocket, counts: type[OneBotAdapter]) -> None:
        self._websocket = websocket
        self._counts = counts
        self.malformed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._websocket, name)

    async def receive(self) -> str | bytes:
        while True:
            data = await self._websocket.receive()
            try:
                if isinstance(json.loads(data), dict):
                    return data
            except (ValueError, RecursionError):
                pass
            self.malformed += 1
            self._counts.malformed_frames += 1
            if _every_so_often(self.malformed):
                logger.warning(f"OneBot: ignored {self.malformed} malformed frame(s) so far")


class OneBotAdapter(OneBotV11Adapter):
    # set by bot.app.create_app from the settings
    max_message_chars: ClassVar[int] = DEFAULT_MAX_MESSAGE_CHARS
    screen_unaddressed: ClassVar[bool] = True
    nicknames: ClassVar[tuple[str, ...]] = ()
    command_starts: ClassVar[tuple[str, ...]] = ()
    malformed_frames: ClassVar[int] = 0  # not a JSON object
    malformed_events: ClassVar[int] = 0
    unaddressed_messages: ClassVar[int] = 0  # group chatter dropped before NoneBot saw it

    async def _handle_ws(self, websocket: WebSocket) -> None:
        await super()._handle_ws(cast(WebSocket, _ScreenedSocket(websocket, type(self))))

    @classmethod
    def counters(cls) -> dict[str, object]:
        """What the screens dropped since start-up (``/admin/health``)."""
        return {
            "malformed_frames": cls.malformed_frames,
            "malformed_events": cls.malformed_events,
            "unaddressed_messages": cls.unaddressed_messages,
            "screen_unaddressed": cls.screen_unaddressed,
        }

    @classmethod
    def json_to_event(cls, json_data: Any) -> Event | None:
        """Malformed events and group chatter not addressed to the bot are dropped here, before
        NoneBot parses them or runs a matcher (bot/onebot_screen.py says why); huge messages
        (8 MiB of text cost 18 s of CPU and 930 MB) are cut before parsing."""
        if isinstance(json_data, dict) and "post_type" in json_data:
            if not well_formed(json_data):
                cls.malformed_events += 1
                if _every_so_often(cls.malformed_events):
                    logger.warning(f"OneBot: dropped {cls.malformed_events} malformed event(s)")
                return None  # upstream logs a full traceback per bad event: seconds of loop time
            if cls.screen_unaddressed and not addressed(
                json_data, nicknames=cls.nicknames, command_starts=cls.command_starts
            ):
                cls.unaddressed_messages += 1
                return None
        message = isinstance(json_data, dict) and json_data.get("post_type") == "message"
        if message and _cap_message(json_data, cls.max_message_chars):
            logger.warning(
                f"OneBot message {json_data.get('message_id')} from {json_data.get('user_id')}"
                f" cut to {cls.max_message_chars} characters"
            )
        event = super().json_to_event(json_data)
        if type(event) is Event:  # no model of its post type fits: nothing can handle it
            cls.malformed_events += 1
            if _every_so_often(cls.malformed_events):
                logger.warning(f"OneBot: dropped {cls.malformed_events} malformed event(s)")
            return None
        return event

    def _check_access_token(self, request: Request) -> Response | None:
        expected = self.onebot_config.onebot_access_token
        if not expected:
            return None
        token = get_auth_bearer(request.headers.get("authorization"))
        if _same(token, expected):
            return None
        message = "Authorization Header is invalid" if token else "Missing Authorization Header"
        logger.warning(f"OneBot connection refused: {message}")
        return Response(403, content=message)

    def _check_signature(self, request: Request) -> Response | None:
        secret = self.onebot_config.onebot_secret
        if not secret:
            return None
        given = request.headers.get("x-signature")
        if not given:
            return Response(401, content="Missing Signature", request=request)
        if request.content is None:
            return Response(400, content="Missing Content", request=request)
        body = request.content if isinstance(request.content, bytes) else str(request.content)
        data = body if isinstance(body, bytes) else body.encode()
        expected = "sha1=" + hmac.new(secret.encode(), data, "sha1").hexdigest()
        if not _same(given, expected):
            logger.warning("OneBot request refused: signature is invalid")
            return Response(403, content="Signature is invalid")
        return None
