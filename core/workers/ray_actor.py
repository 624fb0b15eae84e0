"""The Ray actor that hosts one model backend on a worker node (imported only with Ray).

An async actor: its event loop answers ``ping``/``go``/``abort`` while the backend computes on
the actor's own thread pool (``concurrency`` threads, 1 by default), so a running call can be
steered. ``run`` is a streaming generator (``num_returns="streaming"``): at every backend step
(``check()``) it yields ``("step", n, chunks)`` with the chunks emitted since the last step,
and at the end ``("result", value, chunks)``, ``("error", exception, chunks)`` or
``("aborted",)``. The backend may run ahead of the front by one step: ``check()`` of step n
waits until the front answered step n-1 with ``go`` (the front's checkpoint passed: neither
cancelled nor paused), so a paused job holds no compute on the box; ``abort`` makes the next
``check()`` raise and the call unwinds.

Pickled by reference: every node imports this module, so every box runs the same xiaoyou
version (``pip install 'xiaoyou[ray]'`` there).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from core.errors import JobCancelled
from core.workers.base import LOAD, UNLOAD, WorkerCall, WorkerSpec
from core.workers.calls import call_backend, portable

STEP, RESULT, ERROR, ABORTED = "step", "result", "error", "aborted"
ENDS = frozenset({RESULT, ERROR, ABORTED})
_ANSWER_WAIT_S = 600.0  # a step whose answer never comes (the front vanished): give up


class _Aborted(JobCancelled):
    """Raised inside the backend at a step after the front's ``abort``."""


class _Call:
    """One running call: its step gate (thread side) and its event queue (loop side)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.gate = threading.Condition()
        self.granted = 0  # the front answered ``go`` up to this step
        self.aborted = False
        self.steps = 0
        self.chunks: list[Any] = []

    # -- backend thread ----------------------------------------------------------------------
    def check(self) -> None:
        self.steps += 1
        n = self.steps
        chunks, self.chunks = self.chunks, []
        self._post((STEP, n, chunks))
        with self.gate:
            ok = self.gate.wait_for(lambda: self.aborted or self.granted >= n - 1, _ANSWER_WAIT_S)
            if self.aborted or not ok:
                raise _Aborted("abandoned by the front")

    def emit(self, chunk: Any) -> None:
        if self.aborted:
            raise _Aborted("abandoned by the front")
        self.chunks.append(chunk)

    def end(self, message: tuple[Any, ...]) -> None:
        self._post(message)

    def _post(self, message: tuple[Any, ...]) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, message)

    # -- actor loop ----------------------------------------------------------------------------
    def grant(self, n: int) -> None:
        with self.gate:
            self.granted = max(self.granted, n)
            self.gate.notify_all()

    def abort(self) -> None:
        with self.gate:
            self.aborted = True
            self.gate.notify_all()


class ModelHost:
    """The actor class (wrapped by :func:`actor_class`)."""

    def __init__(self, spec: WorkerSpec, concurrency: int = 1) -> None:
        os.environ.update(spec.env)
        self._spec = spec
        self._backend: Any = None
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix=f"xiaoyou-{spec.name}")
        self._calls: dict[int, _Call] = {}

    async def ping(self) -> dict[str, Any]:
        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "labels": dict(context.get_node_labels()),
            "pid": os.getpid(),
            "loaded": self._backend is not None,
        }

    async def run(self, call_id: int, call: WorkerCall) -> AsyncIterator[tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        state = _Call(loop)
        self._calls[call_id] = state
        loop.run_in_executor(self._threads, self._execute, call, state)
        try:
            while True:
                event = await state.events.get()
                yield event
                if event[0] in ENDS:
                    return
        finally:  # ended, or the front cancelled the generator: stop the backend at its step
            state.abort()
            self._calls.pop(call_id, None)

    async def go(self, call_id: int, step: int) -> None:
        state = self._calls.get(call_id)
        if state is not None:
            state.grant(step)

    async def abort(self, call_id: int) -> None:
        state = self._calls.get(call_id)
        if state is not None:
            state.abort()

    # -- the backend thread ---------------------------------------------------------------------
    def _execute(self, call: WorkerCall, state: _Call) -> None:
        try:
            value = self._dispatch(call, state)
        except _Aborted:
            state.end((ABORTED,))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the front's job
            state.end((ERROR, portable(exc), state.chunks))
        else:
            state.end((RESULT, value, state.chunks))

    def _dispatch(self, call: WorkerCall, state: _Call) -> Any:
        if call.method == LOAD:
            if self._backend is None:
                self._backend = self._spec.factory(self._spec.settings)
            self._backend.load()
            return {"pid": os.getpid()}
        if call.method == UNLOAD:
            if self._backend is not None:
                self._backend.unload()
            self._backend = None
            return None
        return call_backend(self._backend, call, emit=state.emit, check=state.check)


_ACTOR_CLASS: Any = None


def actor_class() -> Any:
    """``ray.remote(ModelHost)``, made once (at first use, not at import)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = ray.remote(ModelHost)
    return _ACTOR_CLASS
