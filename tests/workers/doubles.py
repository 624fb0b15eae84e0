"""A test-double backend for worker tests, built inside the worker process by ``create_steps``.

Module-level so the worker can unpickle the factory by reference.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel

from core.errors import InferenceError
from core.models.base import CancelCheck, ModelBackend


class StepsSettings(BaseModel):
    step_s: float = 0.0  # compute per step
    fail_load: bool = False


class Steps(ModelBackend):
    def __init__(self, settings: StepsSettings) -> None:
        self._settings = settings
        self.loaded = False

    def load(self) -> None:
        if self._settings.fail_load:
            raise InferenceError("this double never loads")
        self.loaded = True

    def unload(self) -> None:
        self.loaded = False

    def count(self, n: int, *, check: CancelCheck) -> Iterator[int]:
        """n chunks, one step each."""
        for i in range(n):
            time.sleep(self._settings.step_s)
            yield i

    def steps(self, n: int, *, check: CancelCheck, emit: Callable[[str], None]) -> str:
        """n steps, a text chunk before each; returns a summary."""
        for i in range(n):
            time.sleep(self._settings.step_s)
            emit(f"s{i}")
            check()
        return f"done {n}"

    def crash_at(self, step: int, n: int, *, check: CancelCheck) -> int:
        """Dies by SIGKILL at ``step`` (a native crash stand-in)."""
        for i in range(n):
            if i == step:
                os.kill(os.getpid(), signal.SIGKILL)
            check()
        return n

    def fail(self, *, check: CancelCheck) -> None:
        raise InferenceError("the double failed", retryable=True)

    def pid(self, *, check: CancelCheck) -> int:
        return os.getpid()


def create_steps(settings: StepsSettings) -> Steps:
    return Steps(settings)


class GpuSteps(Steps):
    """An SD-shaped double for the VRAM residency tests: offloadable weights (``on_device``),
    and a drawing whose steps fail if they ever run while the weights are offloaded."""

    offloadable = True

    def __init__(self) -> None:
        super().__init__(StepsSettings())
        self.on_device = False
        self.moves: list[str] = []

    def load(self) -> None:
        self.on_device = True

    def unload(self) -> None:
        self.on_device = False

    def offload(self) -> None:
        self.on_device = False
        self.moves.append("offload")

    def restore(self) -> None:
        self.on_device = True
        self.moves.append("restore")

    def generate(self, request: Any, *, check: CancelCheck) -> bytes:
        for _ in range(request.steps):
            check()
            if not self.on_device:
                raise InferenceError("a step ran while the weights were offloaded")
            time.sleep(0.02)
        return f"png {os.getpid()} {','.join(self.moves)}".encode()


def create_gpu_steps(settings: Any) -> GpuSteps:
    return GpuSteps()
