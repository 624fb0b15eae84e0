"""A stand-in model backend for the Ray cluster tests: a ``time.sleep`` per step (GPU-free
stand-in model work that holds no CPU), with counters the tests read back through calls.

Built inside the actor by :func:`make_standin` (module-level, pickled by reference: every node
of the test cluster imports this module from the same work tree).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel


class StandInSettings(BaseModel):
    load_s: float = 0.0
    reply: str = "来自集群的回答。"


class StandIn:
    def __init__(self, settings: StandInSettings) -> None:
        self.settings = settings
        self.loads = 0
        self.steps = 0
        self.calls = 0

    def load(self) -> None:
        time.sleep(self.settings.load_s)
        self.loads += 1

    def unload(self) -> None:
        return None

    def generate(
        self,
        words: list[str],
        step_s: float,
        *,
        check: Callable[[], None],
        emit: Callable[[Any], None],
    ) -> str:
        """One word per step; the result names the node and the actor process."""
        self.calls += 1
        for word in words:
            time.sleep(step_s)
            self.steps += 1
            emit(word)
            check()
        return f"{'/'.join(sorted(_labels().values()))} {os.getpid()}"

    def reply(self, *, check: Callable[[], None], emit: Callable[[Any], None]) -> None:
        """The device test's LLM: the configured reply in three streamed pieces."""
        text = f"{self.settings.reply}节点{_labels().get('xiaoyou-node', '?')}。"
        third = max(1, len(text) // 3)
        for i in range(0, len(text), third):
            time.sleep(0.02)
            emit(text[i : i + third])
            check()

    def echo(self, value: Any, *, check: Callable[[], None]) -> Any:
        """The cheapest call (per-job overhead benches)."""
        return value

    def tick(self, steps: int, *, check: Callable[[], None], emit: Callable[[Any], None]) -> int:
        """``steps`` empty steps, each a chunk (per-step overhead benches)."""
        for i in range(steps):
            emit(i)
            check()
        return steps

    def stats(self, *, check: Callable[[], None]) -> dict[str, int]:
        return {"loads": self.loads, "steps": self.steps, "calls": self.calls, "pid": os.getpid()}


def _labels() -> dict[str, str]:
    import ray

    return {k: v for k, v in ray.get_runtime_context().get_node_labels().items() if "xiaoyou" in k}


def make_standin(settings: StandInSettings) -> StandIn:
    return StandIn(settings)
