"""Where plugins find the long-lived services: a :class:`BotRuntime` kept in the app's state.

The composition root (:mod:`bot.app`) builds one runtime and stores it on the NoneBot FastAPI
app (``app.state.xiaoyou``); plugins read it per event with :func:`get_runtime`. There is no
module-level mutable state here, so tests install their own runtime the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import nonebot

from bot.limits import RateLimiter
from bot.state import ConversationStore, JobTracker, QuotaBook

if TYPE_CHECKING:
    from core.services import Services

STATE_KEY = "xiaoyou"


@dataclass(slots=True)
class BotRuntime:
    """Services plus the bot's own per-user bookkeeping (all owned by the app, not globals)."""

    services: Services
    http: httpx.AsyncClient  # image downloads (see plugin); closed on shutdown
    jobs: JobTracker = field(default_factory=JobTracker)
    conversations: ConversationStore = field(default_factory=ConversationStore)
    quotas: QuotaBook = field(default_factory=QuotaBook)
    limits: RateLimiter = field(default_factory=RateLimiter)  # chat and /say

    async def aclose(self) -> None:
        await self.http.aclose()


def install_runtime(app: Any, runtime: BotRuntime) -> None:
    """Store ``runtime`` on a FastAPI/Starlette app so plugins can reach it."""
    setattr(app.state, STATE_KEY, runtime)


def runtime_of(app: Any) -> BotRuntime:
    runtime = getattr(app.state, STATE_KEY, None)
    if not isinstance(runtime, BotRuntime):
        raise RuntimeError("xiaoyou runtime is not installed on the app (create_app not called?)")
    return runtime


def get_runtime() -> BotRuntime:
    """The runtime of the running NoneBot app."""
    return runtime_of(nonebot.get_app())


def get_services() -> Services:
    return get_runtime().services
