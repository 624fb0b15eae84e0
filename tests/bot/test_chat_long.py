"""A long conversation in one group keeps getting answers: the real Inference facade fits
the history into the model's context (oldest exchanges first) before every request."""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import httpx
import nonebot
import pytest
from nonebot.adapters.onebot.v11 import Bot
from nonebug import App

from bot.limits import RateLimiter
from bot.runtime import BotRuntime, install_runtime
from core.errors import InferenceError
from core.models.base import CancelCheck
from core.models.chat_context import MESSAGE_OVERHEAD_TOKENS
from core.models.inference import Inference
from core.models.llm import ChatMessage, Llm, estimate_tokens
from core.models.manager import ModelManager
from core.scheduler import Scheduler
from core.services import Services
from core.settings import build_settings
from tests.bot.conftest import SELF_ID, Matching, group_event
from tests.bot.fakes import FakeModels

N_CTX = 1024


class ContextBoundLlm(Llm):
    """A chat model that refuses a prompt which leaves no room for the reply, like llama.cpp
    ("Requested tokens exceed context window"); answers with a long Chinese sentence."""

    def __init__(self) -> None:
        self.prompts: list[list[ChatMessage]] = []
        self._lock = threading.Lock()

    def load(self) -> None:
        pass

    def context_tokens(self) -> int | None:
        return N_CTX

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        with self._lock:
            self.prompts.append(list(messages))
            turn = len(self.prompts)
        used = sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in messages)
        if used + max_tokens > N_CTX:
            raise InferenceError("Requested tokens exceed context window")
        yield f"第{turn}次回答："
        yield f"今天的天气很适合出门散步，记得带上水和帽子。编号{turn}。"


@pytest.fixture
async def real_facade(tmp_path: Path) -> AsyncIterator[tuple[BotRuntime, ContextBoundLlm]]:
    settings = build_settings(
        scheduler={"resources": {"cpu": 1}, "prewarm": False, "thread_workers": 2}
    )
    scheduler = Scheduler(settings.scheduler)
    await scheduler.start()
    llm = ContextBoundLlm()
    manager = ModelManager(
        settings.models, scheduler, tmp_path, factories={"llm": lambda _s, _c: llm}
    )
    services = Services(
        settings=settings,
        scheduler=scheduler,
        models=cast(Any, FakeModels()),
        inference=Inference(scheduler, manager, settings.models),
    )
    # one question every 10 s as the rate limits see it: 50 exchanges stay within them
    minutes = itertools.count(0.0, 10.0)
    rt = BotRuntime(
        services=services, http=httpx.AsyncClient(), limits=RateLimiter(clock=lambda: next(minutes))
    )
    install_runtime(nonebot.get_app(), rt)
    try:
        yield rt, llm
    finally:
        await scheduler.stop()
        await manager.close()
        await rt.aclose()


async def test_fifty_exchanges_in_one_group_keep_answering(
    app: App, real_facade: tuple[BotRuntime, ContextBoundLlm], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.plugins import chat as chat_plugin

    runtime, llm = real_facade
    monkeypatch.setattr(chat_plugin.config, "max_context_messages", 200)  # keep all 50
    for i in range(1, 51):
        reply = Matching(lambda m, i=i: str(m).startswith(f"第{i}次回答："))
        async with app.test_matcher(chat_plugin.chat) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event(f"第{i}个问题：今天适合出去玩吗？我们想去公园野餐。")
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, reply, result={"message_id": i})
            ctx.should_finished(chat_plugin.chat)
    assert len(runtime.conversations.history("group:30003")) == 100
    last = llm.prompts[-1]
    assert last[0].role == "system"
    assert "第50个问题" in last[-1].content and "第49次回答" in last[-2].content
    assert not any("第1个问题" in m.content for m in last)  # the oldest went first
