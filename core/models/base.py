"""What every model backend shares: explicit load/unload and a cancel check.

Backends are blocking (native code that releases the GIL: onnxruntime, CTranslate2,
llama.cpp, torch). The scheduler runs them as THREAD jobs; nothing here touches asyncio.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

# Called by a backend between chunks/steps; raises core.errors.JobCancelled (or yields the
# job's resources for preemption) when the scheduler asks. See JobContext.checkpoint_blocking.
CancelCheck = Callable[[], None]


def never_cancelled() -> None:
    """A CancelCheck for direct, unscheduled use (benchmarks, one-off scripts)."""


class ModelBackend(ABC):
    """A loadable model. ``load`` may take seconds and is called once by the manager.

    A job preempted between steps gives its CPU/VRAM back; it also gives the model's slot
    (``model:<name>``) back unless ``pause_keeps_model``: True when per-job state lives in
    the shared model object and another job would overwrite it (a diffusers pipeline's noise
    schedule). A backend may instead carry that state across the pause with
    :meth:`save_state` / :meth:`restore_state` (llama.cpp's KV cache).

    On a GPU the weights stay resident while jobs pause (preemption yields compute, not
    memory). A backend that can move its weights to host memory and back sets
    ``offloadable``: the manager then calls :meth:`offload` when every job on the model is
    paused and another model needs the room, and :meth:`restore` before the model is used
    again (diffusers' ``pipe.to("cpu")`` / ``pipe.to("cuda")``).
    """

    pause_keeps_model: ClassVar[bool] = True
    offloadable: ClassVar[bool] = False

    @abstractmethod
    def load(self) -> None:
        """Load weights; raise core.errors.ModelLoadError with a clear message on failure."""

    def unload(self) -> None:  # noqa: B027 - optional hook, most backends need no teardown
        """Drop references to weights so memory can be reclaimed (default: nothing to do)."""

    def offload(self) -> None:
        """Move the weights to host memory (only called when ``offloadable``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot offload")

    def restore(self) -> None:
        """Move offloaded weights back to the device (only called after :meth:`offload`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore")

    def warm_up(self, check: CancelCheck) -> None:  # noqa: B027 - optional hook
        """One small inference right after a warm-start load, so the first request does not
        pay first-call costs (kernel and buffer set-up, the first decode); default: nothing.
        The manager runs it before the model counts as loaded for readiness."""

    def save_state(self) -> object:
        """The running job's state in the shared model, before a pause (default: none)."""
        return None

    def restore_state(self, state: object) -> None:  # noqa: B027 - optional hook
        """Put back what :meth:`save_state` returned, after the pause (default: nothing)."""
