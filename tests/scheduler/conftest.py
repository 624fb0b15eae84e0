"""Fixtures for scheduler tests: a real Scheduler on the test's loop, stopped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from core.scheduler import Scheduler, SchedulerSettings

MakeScheduler = Callable[..., Awaitable[Scheduler]]


@pytest.fixture
async def make_scheduler() -> AsyncIterator[MakeScheduler]:
    made: list[Scheduler] = []

    async def make(**overrides: Any) -> Scheduler:
        settings = {
            "resources": {"cpu": 1},
            "thread_workers": 2,
            "drain_timeout_s": 2.0,
            **overrides,
        }
        scheduler = Scheduler(SchedulerSettings(**settings))
        await scheduler.start()
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        await scheduler.stop()
