"""Fixtures for the device hub: a real scheduler, a hub on a real uvicorn socket on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from core.scheduler import Scheduler, SchedulerSettings
from core.settings import DeviceSettings
from devices.hub import DeviceHub
from devices.ports import VoiceInference
from devices.simulator import DeviceSimulator
from tests.devices.fakes import FakeInference


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[int]:
    """Run ``app`` with uvicorn on 127.0.0.1, an ephemeral port; yields the port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", ws="websockets-sansio", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(), name="test-uvicorn")
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port: int = server.servers[0].sockets[0].getsockname()[1]
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


class HubServer:
    def __init__(self, hub: DeviceHub, port: int) -> None:
        self.hub = hub
        self.port = port
        self.url = f"ws://127.0.0.1:{port}{hub.settings.ws_path}"
        self.http = f"http://127.0.0.1:{port}"
        self.simulators: list[DeviceSimulator] = []

    def device(self, **kwargs: Any) -> DeviceSimulator:
        sim = DeviceSimulator(self.url, **kwargs)
        self.simulators.append(sim)
        return sim


StartHub = Callable[..., Awaitable[HubServer]]


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    sched = Scheduler(
        SchedulerSettings(
            resources={"cpu": 2}, thread_workers=4, drain_timeout_s=1.0, cancel_timeout_s=1.0
        )
    )
    await sched.start()
    yield sched
    await sched.stop()


@pytest.fixture
def fake(scheduler: Scheduler) -> FakeInference:
    return FakeInference(scheduler)


@pytest.fixture
async def start_hub(scheduler: Scheduler) -> AsyncIterator[StartHub]:
    stack: list[tuple[HubServer, Any]] = []

    async def start(inference: VoiceInference, **settings: Any) -> HubServer:
        # a scripted LLM double counts its rounds: the tools' warm-up (one more round at
        # connect) is off unless a test asks for it (test_llm_tools.py tests it)
        settings.setdefault("warm_tool_prompt", False)
        hub = DeviceHub(DeviceSettings(**settings), inference, scheduler)
        app = FastAPI()
        app.include_router(hub.router())
        ctx = serve(app)
        port = await ctx.__aenter__()
        server = HubServer(hub, port)
        stack.append((server, ctx))
        return server

    yield start
    for server, ctx in reversed(stack):
        for sim in server.simulators:
            await sim.close()
        await server.hub.close()
        await ctx.__aexit__(None, None, None)
