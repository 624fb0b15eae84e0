"""/see image fetching (issue #16 item 4): no fetches from loopback/private/link-local
targets unless configured, and no reads of local files named by get_image."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from nonebot.adapters.onebot.v11 import MessageSegment

from bot.media import BlockedTarget, check_target, fetch_image
from core.errors import ProtocolError


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/admin/stats",
        "http://localhost/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/x.png",
        "http://192.168.1.1/x.png",
        "http://0.0.0.0/",
    ],
)
async def test_private_targets_are_blocked(url: str) -> None:
    with pytest.raises(BlockedTarget):
        await check_target(url, allow_private=False)
    await check_target(url, allow_private=True)  # configured: allowed


async def test_no_request_and_no_local_read(tmp_path: Path) -> None:
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=b"secret")

    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for strangers")

    async def call_api(api: str, **data: Any) -> dict[str, Any]:
        return {"file": str(secret), "url": "http://127.0.0.1:9/other"}

    bot: Any = SimpleNamespace(call_api=call_api)
    segment = MessageSegment("image", {"file": "x.image", "url": "http://127.0.0.1:8080/admin"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        with pytest.raises(ProtocolError):
            await fetch_image(bot, client, segment, max_bytes=1000, timeout_s=2)
        assert requests == []  # neither URL was fetched, the file was not read
        # a directory shared with the OneBot implementation can be allowed explicitly
        data = await fetch_image(
            bot, client, segment, max_bytes=1000, timeout_s=2, local_dirs=[tmp_path]
        )
        assert data == b"not for strangers"
