"""nonebug set-up for the bot tests: NoneBot initialised hermetically (no .env from the
working directory), the OneBot v11 adapter and our plugins loaded, and a fresh BotRuntime
with a REAL scheduler and a test-double Inference installed on the app for every test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, cast

import httpx
import nonebot
import pytest
from nonebot.adapters.onebot.v11 import (
    Adapter,
    GroupMessageEvent,
    Message,
    PrivateMessageEvent,
)
from nonebot.adapters.onebot.v11.event import Reply, Sender
from nonebug import NONEBOT_INIT_KWARGS, NONEBOT_START_LIFESPAN, App

from bot.plugins import PLUGINS
from bot.runtime import BotRuntime, install_runtime
from bot.state import QuotaBook
from core.scheduler import Scheduler
from core.services import Services
from core.settings import build_settings
from tests.bot.fakes import FakeInference, FakeModels

SELF_ID = "42"
SUPERUSER_ID = "10001"
DRAW_COOLDOWN_S = 60.0
DRAW_DAILY_QUOTA = 2

PLUGIN_CONFIG: dict[str, Any] = {
    "chat": {"persona": "你是测试机器人。", "max_context_messages": 4, "max_message_chars": 50},
    "draw": {
        "cooldown_s": DRAW_COOLDOWN_S,
        "daily_quota": DRAW_DAILY_QUOTA,
        "blocked_words": ["forbidden"],
        "max_image_bytes": 32 * 1024,
    },
    "say": {"max_chars": 20, "sample_rate_hz": 16000},
    "see": {"max_image_bytes": 4096, "download_timeout_s": 2.0},
}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[NONEBOT_INIT_KWARGS] = {
        "driver": "~fastapi",
        "superusers": {SUPERUSER_ID},
        "nickname": {"小优"},
        "command_start": {"/", ""},  # the production default: bare commands too
        "log_level": "WARNING",
        **PLUGIN_CONFIG,
    }
    config.stash[NONEBOT_START_LIFESPAN] = False


@pytest.fixture(scope="session", autouse=True)
def _nonebot_init(request: pytest.FixtureRequest) -> None:
    """nonebug's init, run from an empty directory so no .env leaks into the tests."""
    from nonebot.matcher import matchers
    from nonebug.provider import NoneBugProvider

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as empty:
        os.chdir(empty)
        try:
            nonebot.init(**request.config.stash.get(NONEBOT_INIT_KWARGS, {}))
        finally:
            os.chdir(cwd)
    matchers.set_provider(NoneBugProvider)


@pytest.fixture(scope="session", autouse=True)
def after_nonebot_init(_nonebot_init: None) -> None:
    nonebot.get_driver().register_adapter(Adapter)
    for plugin in PLUGINS:
        nonebot.load_plugin(plugin)


@pytest.fixture(scope="session", autouse=True)
def nonebug_init(_nonebot_init: None, after_nonebot_init: None) -> None:
    """Replaces nonebug's async session fixture (it needs a session event loop, which this
    project's function-scoped loops do not give); the driver lifespan is not needed here."""


@pytest.fixture(name="app")
def nonebug_app(nonebug_init: None) -> App:
    return App()


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


ImageHandler = Callable[[httpx.Request], httpx.Response]


class ImageServer:
    """What image URLs answer (an httpx MockTransport handler); default: 404 (expired)."""

    def __init__(self) -> None:
        self.routes: dict[str, httpx.Response] = {}
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        return self.routes.get(str(request.url), httpx.Response(404))


@pytest.fixture
def images() -> ImageServer:
    return ImageServer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def runtime(images: ImageServer, clock: FakeClock) -> AsyncIterator[BotRuntime]:
    settings = build_settings(
        scheduler={"resources": {"cpu": 1}, "prewarm": False, "thread_workers": 1}
    )
    scheduler = Scheduler(settings.scheduler)
    await scheduler.start()
    services = Services(
        settings=settings,
        scheduler=scheduler,
        models=cast(Any, FakeModels()),
        inference=cast(Any, FakeInference(scheduler)),
    )
    rt = BotRuntime(
        services=services,
        http=httpx.AsyncClient(transport=httpx.MockTransport(images)),
        quotas=QuotaBook(clock=clock),
    )
    install_runtime(nonebot.get_app(), rt)
    try:
        yield rt
    finally:
        await scheduler.stop()
        await rt.aclose()


def fake_inference(rt: BotRuntime) -> FakeInference:
    inference = rt.services.inference
    assert isinstance(inference, FakeInference)
    return inference


_ids = iter(range(1000, 10**9))


def group_event(
    message: Message | str,
    *,
    user_id: int = 20002,
    group_id: int = 30003,
    to_me: bool = True,
    reply: Reply | None = None,
    card: str = "阿明",
) -> GroupMessageEvent:
    message = Message(message)
    return GroupMessageEvent(
        time=int(datetime.now().timestamp()),
        self_id=int(SELF_ID),
        post_type="message",
        sub_type="normal",
        user_id=user_id,
        message_type="group",
        message_id=next(_ids),
        message=message,
        original_message=message,
        raw_message=str(message),
        font=0,
        sender=Sender(user_id=user_id, nickname="ming", card=card),
        to_me=to_me,
        reply=reply,
        group_id=group_id,
    )


def private_event(message: Message | str, *, user_id: int = 20002) -> PrivateMessageEvent:
    message = Message(message)
    return PrivateMessageEvent(
        time=int(datetime.now().timestamp()),
        self_id=int(SELF_ID),
        post_type="message",
        sub_type="friend",
        user_id=user_id,
        message_type="private",
        message_id=next(_ids),
        message=message,
        original_message=message,
        raw_message=str(message),
        font=0,
        sender=Sender(user_id=user_id, nickname="ming"),
        to_me=True,
    )


class Matching:
    """An expected message for ``should_call_send`` that accepts what ``predicate`` accepts
    and keeps what it saw (for messages whose exact bytes are not known in advance)."""

    def __init__(self, predicate: Callable[[Any], bool]) -> None:
        self.predicate = predicate
        self.seen: list[Any] = []

    def __eq__(self, other: object) -> bool:
        self.seen.append(other)
        return self.predicate(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Matching({self.predicate!r})"


def anything(_: Any) -> bool:
    return True
