"""The model worker interface: one model's compute outside the event loop's process.

A :class:`Worker` hosts one model backend (built and loaded *inside* the worker) and runs one
:class:`WorkerCall` at a time; the scheduler's ``model:<name>`` resource guarantees that, so a
worker never queues calls itself. The front (an ASYNC scheduler job, holding no thread) awaits
:meth:`Worker.call` and is called back:

- ``on_step(n)`` at every step of the backend (a token, a denoising step, an audio chunk). The
  front runs ``JobContext.checkpoint()`` there: a cancel raises out of ``on_step`` (the worker
  then abandons the call and :meth:`Worker.call` raises that error), a preemption makes
  ``on_step`` wait until the job is resumed. The worker must not compute past step ``n`` while
  ``on_step(n)`` is pending (a paused job holds no CPU/GPU compute); an implementation that
  reports steps without waiting for each answer (e.g. a Ray actor polling a flag) may run
  ahead by at most one step.
- ``on_chunk(x)`` for every streamed piece (text of a token, a PCM chunk), in order, before
  the ``on_step`` of the same step; the front awaits it (backpressure: ``JobContext.emit``).

Lifecycle: NEW -> (start) STARTING -> IDLE <-> BUSY; a process that dies (kill -9, a native
crash) makes the running call raise :class:`core.errors.WorkerDied` (retryable) and the state
DEAD; ``start()`` again gives a fresh worker (the model must be loaded again: a ``load`` call).
``stop(timeout_s)`` asks the worker to exit and kills it after ``timeout_s``: STOPPED.
Implementations: :mod:`core.workers.process` (a local subprocess); a Ray actor later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

# the calls every worker understands besides its backend's own methods
LOAD = "load"  # build the backend from the worker's spec and load its weights
UNLOAD = "unload"  # drop the weights (the process stays)
OFFLOAD = "offload"  # move the weights to host memory (ModelBackend.offload), the call idle
RESTORE = "restore"  # and back (ModelBackend.restore)


class WorkerState(StrEnum):
    NEW = "new"  # built, no process yet
    STARTING = "starting"
    IDLE = "idle"  # ready for a call
    BUSY = "busy"  # running a call (or unwinding an abandoned one)
    DEAD = "dead"  # the process died; start() replaces it
    STOPPED = "stopped"  # stopped on purpose


@dataclass(frozen=True, slots=True)
class WorkerCall:
    """One call of the hosted backend's ``method(*args, **kwargs, check=...)``.

    ``model``: the model name ("vl", "sd"), for checks and logs. ``args``/``kwargs`` must be
    picklable. Inside the worker the backend gets ``check`` (a step: reports ``on_step``) and,
    when ``stream`` is True, ``emit`` (a chunk: reports ``on_chunk``); a method that returns an
    iterator streams each item as a chunk (one step each) and the call's result is None.
    """

    model: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = False


StepCallback = Callable[[int], Awaitable[None]]
ChunkCallback = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker hosts: ``factory(settings)`` builds the backend inside the worker.

    ``factory`` is a module-level function (pickled by reference), e.g. ``create_vl``.
    """

    name: str  # "vl", "sd": also the worker's process title suffix and log name
    factory: Callable[[Any], Any]
    settings: Any  # the kind's pydantic settings (picklable)
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment of the worker


async def no_step(step: int) -> None:
    """An ``on_step`` for direct use (benchmarks): never pauses, never cancels."""


async def no_chunk(chunk: Any) -> None:
    """An ``on_chunk`` that drops the chunk."""


@runtime_checkable
class Worker(Protocol):
    """A model worker; see the module docstring for the contract."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> WorkerState: ...

    async def start(self) -> None:
        """Start (or, after DEAD/STOPPED, restart) the worker; returns once it is IDLE."""

    async def call(
        self, call: WorkerCall, *, on_step: StepCallback, on_chunk: ChunkCallback
    ) -> Any:
        """Run ``call``; raises the backend's error (a core.errors.XiaoyouError is passed
        through with its class and ``retryable``), whatever ``on_step``/``on_chunk`` raised,
        or WorkerDied when the worker died meanwhile."""

    async def cancel(self) -> None:
        """Abandon the running call at its next step (no-op when idle). The call raises
        core.errors.JobCancelled; the worker is IDLE again after that step."""

    async def stop(self, timeout_s: float) -> None:
        """Ask the worker to exit; kill it after ``timeout_s``. State STOPPED."""
