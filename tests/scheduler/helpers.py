"""Tiny job functions shared by the scheduler tests."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from core.scheduler import JobContext


class Gate:
    """An async job body that holds its resources until the test opens the gate."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, ctx: JobContext) -> str:
        self.started.set()
        await self.opened.wait()
        return "gate"


async def record(ctx: JobContext, log: list[Any], tag: Any) -> Any:
    log.append(tag)
    return tag


async def noop(ctx: JobContext) -> None:
    return None


def square(x: int) -> int:  # PROCESS jobs: plain picklable function, no context
    return x * x


def die() -> None:  # PROCESS job that kills its worker process
    os._exit(3)
