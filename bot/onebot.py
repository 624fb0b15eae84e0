"""The OneBot v11 adapter as xiaoyou registers it: constant-time credential checks.

The upstream adapter compares the access token (and the HTTP POST signature) with ``!=``,
whose run time depends on how many leading characters match. This subclass keeps every other
behaviour and compares with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hmac

from nonebot.adapters.onebot.utils import get_auth_bearer
from nonebot.adapters.onebot.v11 import Adapter as OneBotV11Adapter
from nonebot.drivers import Request, Response
from nonebot.log import logger


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class OneBotAdapter(OneBotV11Adapter):
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
