"""Bearer-token guard for /admin: constant-time compare, 503 when no token is configured."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import HTTPException, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

DISABLED_DETAIL = "admin API disabled: no token configured (set XIAOYOU_ADMIN__TOKEN)"

_bearer = HTTPBearer(auto_error=False, description="the token in settings.admin.token")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


def require_token(token: SecretStr | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that admits only ``Authorization: Bearer <token>``."""
    expected = None if token is None else token.get_secret_value().encode()
    if expected == b"":
        expected = None  # an empty token would admit everybody: treat it as "not configured"

    async def check(creds: Credentials) -> None:
        if expected is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, DISABLED_DETAIL)
        given = b"" if creds is None else creds.credentials.encode()
        if not secrets.compare_digest(given, expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
