"""What every model backend shares: explicit load/unload and a cancel check.

Backends are blocking (native code that releases the GIL: onnxruntime, CTranslate2,
llama.cpp, torch). The scheduler runs them as THREAD jobs; nothing here touches asyncio.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

# Called by a backend between chunks/steps; raises core.errors.JobCancelled (or yields the
# job's resources for preemption) when the scheduler asks. See JobContext.checkpoint_blocking.
CancelCheck = Callable[[], None]


def never_cancelled() -> None:
    """A CancelCheck for direct, unscheduled use (benchmarks, one-off scripts)."""


class ModelBackend(ABC):
    """A loadable model. ``load`` may take seconds and is called once by the manager."""

    @abstractmethod
    def load(self) -> None:
        """Load weights; raise core.errors.ModelLoadError with a clear message on failure."""

    def unload(self) -> None:  # noqa: B027 - optional hook, most backends need no teardown
        """Drop references to weights so memory can be reclaimed (default: nothing to do)."""
