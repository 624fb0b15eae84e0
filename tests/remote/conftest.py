"""Fixtures: the loopback stand-in services and a real scheduler + manager + inference stack."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from core.models.inference import Inference
from core.models.manager import ModelManager
from core.models.settings import ModelsSettings, with_remote_resources
from core.scheduler import Scheduler, SchedulerSettings
from tests.remote.servers import RunningServer, serve_in_thread


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread() as srv:
        yield srv


Stack = tuple[Scheduler, ModelManager, Inference]


@pytest.fixture
def make_stack(tmp_path: Path) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(models: dict[str, Any], **scheduler: Any) -> AsyncIterator[Stack]:
        settings = ModelsSettings.model_validate(models)
        base = SchedulerSettings(
            **{
                "resources": {"cpu": 2},
                "thread_workers": 4,
                "prewarm": False,
                "drain_timeout_s": 1.0,
                "cancel_timeout_s": 1.0,
                **scheduler,
            }
        )
        sched = Scheduler(with_remote_resources(base, settings))
        await sched.start()
        manager = ModelManager(settings, sched, tmp_path / "models")
        try:
            yield sched, manager, Inference(sched, manager, settings)
        finally:
            await sched.stop()
            await manager.close()

    return make
