"""The OneBot access token (issue #16 item 5): compared in constant time, wrong ones refused."""

from __future__ import annotations

import hmac
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
import websockets
from nonebot.drivers import Request

import bot.onebot
from bot.onebot import MAX_SEGMENTS, OneBotAdapter
from tests.abuse.conftest import StartServer, onebot_headers


def _check(token: str | None, expected: str | None) -> Any:
    fake_self = SimpleNamespace(onebot_config=SimpleNamespace(onebot_access_token=expected))
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = Request("GET", "ws://127.0.0.1/onebot/v11/ws", headers=headers)
    return OneBotAdapter._check_access_token(fake_self, request)  # type: ignore[arg-type]


def test_token_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(bot.onebot.hmac, "compare_digest", spy)
    assert _check("right", "right") is None
    assert _check("wrong", "right").status_code == 403
    assert _check(None, "right").status_code == 403
    assert _check(None, None) is None  # no token configured: the adapter's own behaviour
    assert calls == [(b"right", b"right"), (b"wrong", b"right")]


async def test_served_adapter_refuses_wrong_tokens(start_server: StartServer) -> None:
    served = start_server()
    url = f"{served.ws}/onebot/v11/ws"
    for token in (None, "wrong", "abuse-onebot-toke"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=onebot_headers(token)):
                pass
        assert refused.value.response.status_code == 403
    async with websockets.connect(url, additional_headers=onebot_headers()) as ws:
        assert ws.close_code is None


def test_huge_message_is_cut_before_parsing() -> None:
    """Issue #16 item 11: an 8 MiB message went whole into NoneBot and the chat model."""
    from tests.abuse.conftest import group_message

    data = json.loads(group_message("字" * 8_000_000))
    data["message"] += [{"type": "face", "data": {"id": "1"}}] * 100_000
    started = time.perf_counter()
    event = OneBotAdapter.json_to_event(data)
    elapsed_s = time.perf_counter() - started
    assert event is not None
    text = event.get_plaintext()  # type: ignore[attr-defined]
    assert len(text) <= OneBotAdapter.max_message_chars and text.startswith("字")
    assert len(event.get_message()) <= MAX_SEGMENTS
    assert elapsed_s < 1.0
