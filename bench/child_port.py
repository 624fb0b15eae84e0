"""The port handshake of the benches' child servers: the child prints ``PORT <n>`` once it
listens; the parent reads its stdout until that line."""

from __future__ import annotations

import asyncio


async def read_port(proc: asyncio.subprocess.Process, timeout_s: float) -> int:
    """The port the child ``proc`` printed; each line must come within ``timeout_s``."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=timeout_s)).decode()
        if not line:
            raise RuntimeError("bench server exited")
        if line.startswith("PORT "):
            return int(line.split()[1])
