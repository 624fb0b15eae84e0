"""Fixtures for the admin API: the real Scheduler, test-double model manager and directories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bot.admin import create_admin_router, create_ops_router
from core.errors import JobCancelled, ModelLoadError, ModelNotConfigured
from core.scheduler import ExecMode, JobContext, JobSpec, Lane, Scheduler, SchedulerSettings
from core.services import Services
from core.settings import build_settings
from tests.nonebug_off import (  # noqa: F401 - fixtures, used by name
    _nonebot_init,
    after_nonebot_init,
    nonebug_init,
)

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeModels:
    """Test double of core.models.manager.ModelManager: loads run as real scheduler jobs."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.entries: dict[str, dict[str, object]] = {
            "llm": {"name": "llm", "loaded": False, "footprint_mb": 512, "last_used_ts": None},
            "sd": {"name": "sd", "loaded": False, "footprint_mb": 2048, "last_used_ts": None},
        }
        self.broken = {"sd": "weights file /models/sd/unet.safetensors is corrupt"}
        self.last_owner = ""
        self.warm: dict[str, object] = {"warm_start": True, "ready": True, "errors": {}}

    def snapshot(self) -> list[dict[str, object]]:
        return [dict(e) for e in self.entries.values()]

    def warm_up_status(self) -> dict[str, object]:
        return dict(self.warm)

    def vram(self) -> dict[str, dict[str, object]]:
        row: dict[str, object] = {"budget_mb": 8192, "used_mb": 2048, "working_mb": 0}
        return {"cuda:0": {**row, "peak_mb": 2048, "weights_mb": {"sd": 2048}, "waiting": []}}

    async def load(
        self, name: str, *, lane: Lane = Lane.INTERACTIVE, owner: str = "system"
    ) -> None:
        if name not in self.entries:
            raise ModelNotConfigured(f"no model named {name!r}")
        self.last_owner = owner

        def work(ctx: JobContext) -> None:
            ctx.checkpoint_blocking()
            if name in self.broken:
                raise ModelLoadError(self.broken[name])

        spec = JobSpec(
            kind=f"load:{name}", mode=ExecMode.THREAD, resources={"cpu": 1}, owner="admin"
        )
        await self.scheduler.submit(work, spec=spec)
        self.entries[name]["loaded"] = True

    async def unload(self, name: str) -> bool:
        if name not in self.entries:
            raise ModelNotConfigured(f"no model named {name!r}")
        was_loaded = bool(self.entries[name]["loaded"])
        self.entries[name]["loaded"] = False
        return was_loaded


class FakeDirectory:
    def __init__(self, items: list[dict[str, object]]) -> None:
        self.items = items

    def snapshot(self) -> list[dict[str, object]]:
        return list(self.items)


def scheduler_settings() -> SchedulerSettings:
    return SchedulerSettings(
        resources={"cpu": 2, "vram:0": 8192}, thread_workers=2, runners=8, prewarm=False
    )


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    sched = Scheduler(scheduler_settings())
    await sched.start()
    try:
        yield sched
    finally:
        await sched.stop()


def make_services(scheduler: Scheduler, token: str | None = TOKEN) -> Services:
    settings = build_settings(admin={"token": token}, scheduler=scheduler.settings.model_dump())
    return Services(
        settings=settings,
        scheduler=scheduler,
        models=FakeModels(scheduler),  # type: ignore[arg-type]
        inference=object(),  # type: ignore[arg-type]
        devices=FakeDirectory(
            [{"device_id": "aa:bb:cc:dd:ee:ff", "state": "listening", "protocol_version": 3}]
        ),
        bots=FakeDirectory([{"self_id": "10001", "adapter": "OneBot V11"}]),
        started_at=1.0,
    )


def make_app(services: Services) -> FastAPI:
    app = FastAPI(title="xiaoyou admin test")
    app.include_router(create_ops_router(services))
    app.include_router(create_admin_router(services))
    return app


@pytest.fixture
def services(scheduler: Scheduler) -> Services:
    return make_services(scheduler)


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as c:
        yield c


async def double(ctx: JobContext, x: int) -> int:
    await ctx.checkpoint()
    return x * 2


async def fail(ctx: JobContext) -> None:
    raise ValueError("boom")


class Blocker:
    """An async job that runs until released; records whether it saw its cancellation."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.stopped = asyncio.Event()  # set when the job's own code saw its cancellation

    async def __call__(self, ctx: JobContext) -> str:
        self.started.set()
        try:
            while not self.release.is_set():
                await ctx.checkpoint()
                await asyncio.sleep(0.01)
        except (JobCancelled, asyncio.CancelledError):
            self.stopped.set()  # async jobs are stopped at a checkpoint or an await
            raise
        return "released"


async def run_some(scheduler: Scheduler) -> dict[str, Any]:
    """Three completed "demo" jobs, one failed "broken" job, in known lanes and owners."""
    for i in range(3):
        spec = JobSpec(kind="demo", lane=Lane.INTERACTIVE, owner=f"qq:group:{i % 2}")
        assert await scheduler.submit(double, i, spec=spec) == i * 2
    handle = scheduler.submit(fail, spec=JobSpec(kind="broken", lane=Lane.BACKGROUND))
    with pytest.raises(ValueError, match="boom"):
        await handle
    return {"failed_id": handle.id}
