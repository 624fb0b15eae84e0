"""Wait in a test until a condition holds: the one polling loop the async tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(predicate: Callable[[], object], *, timeout_s: float, poll_s: float) -> None:
    """Return once ``predicate()`` is true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"condition not reached within {timeout_s} s"
        await asyncio.sleep(poll_s)
