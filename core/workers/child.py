"""The worker process: hosts one model backend and runs the front's calls one at a time.

Started by :class:`core.workers.process.ProcessWorker` as a fresh interpreter (never a fork of
the threaded front) with one end of a socketpair. It builds the backend from the
:class:`core.workers.base.WorkerSpec` on the first ``load`` call, so torch and the weights live
here only. At every backend step (``check()``) it reports ``("step", n)`` and waits for the
front's answer: ``go`` continues, ``abort`` raises JobCancelled inside the backend (the call
unwinds and the worker is idle again). A closed socket (the front went away) ends the process.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from core.errors import InferenceError, JobCancelled, XiaoyouError
from core.workers import wire
from core.workers.base import LOAD, OFFLOAD, RESTORE, UNLOAD, WorkerCall, WorkerSpec
from core.workers.calls import call_backend, portable

log = logging.getLogger("xiaoyou.worker")


class _FrontGone(Exception):
    """The socket closed: the front process exited or stopped us."""


class _Stop(Exception):
    """The front asked this worker to exit."""


class Link:
    """The blocking end of the socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, message: tuple[Any, ...]) -> None:
        self._sock.sendall(wire.frame(message))

    def send_frame(self, data: bytes) -> None:
        self._sock.sendall(data)

    def recv(self) -> tuple[Any, ...]:
        header = self._exactly(wire.HEADER_BYTES)
        return wire.load(self._exactly(wire.body_length(header)))

    def _exactly(self, size: int) -> bytes:
        view = memoryview(bytearray(size))
        got = 0
        while got < size:
            n = self._sock.recv_into(view[got:])
            if n == 0:
                raise _FrontGone
            got += n
        return view.tobytes()


class Host:
    """One backend and the call loop."""

    def __init__(self, link: Link, spec: WorkerSpec) -> None:
        self._link = link
        self._spec = spec
        self._backend: Any = None

    def serve(self) -> None:
        link = self._link
        link.send((wire.READY, os.getpid()))
        while True:
            message = link.recv()
            kind = message[0]
            if kind == wire.STOP:
                return
            if kind != wire.CALL:  # a late go/abort for a call that already ended
                continue
            try:
                link.send(self._run(message[1]))
            except _Stop:
                return

    def _run(self, call: WorkerCall) -> tuple[Any, ...]:
        step = _Steps(self._link, self._move)
        try:
            value = self._dispatch(call, step)
            step.flush()
        except _Stop:
            raise
        except _Aborted:
            return (wire.ABORTED,)
        except Exception as exc:  # every failure goes back to the front's job
            if not isinstance(exc, XiaoyouError):
                log.warning("%s.%s failed", call.model, call.method, exc_info=True)
            return (wire.ERROR, portable(exc))
        return (wire.RESULT, value)

    def _dispatch(self, call: WorkerCall, step: _Steps) -> Any:
        if call.method == LOAD:
            return self._load()
        if call.method == UNLOAD:
            if self._backend is not None:
                self._backend.unload()
            self._backend = None
            return None
        if call.method in (OFFLOAD, RESTORE):
            return self._move(call.method)
        return call_backend(self._backend, call, emit=step.emit, check=step)

    def _move(self, method: str) -> float:
        """The weights to host memory (``offload``) or back (``restore``); the seconds it took.
        Runs as a call, or inside a call waiting at a step (its latents stay where they are)."""
        backend = self._backend
        if backend is None:
            raise InferenceError(f"worker for {self._spec.name}: the model is not loaded")
        started = time.perf_counter()
        backend.offload() if method == OFFLOAD else backend.restore()
        return time.perf_counter() - started

    def _load(self) -> dict[str, float | None]:
        before_mb = _memory_mb(self._spec.settings)
        started = time.perf_counter()
        if self._backend is None:
            self._backend = self._spec.factory(self._spec.settings)
        self._backend.load()
        load_s = time.perf_counter() - started
        after_mb = _memory_mb(self._spec.settings)
        measured = None if before_mb is None or after_mb is None else max(0.0, after_mb - before_mb)
        offloadable = bool(getattr(self._backend, "offloadable", False))
        return {"load_s": load_s, "measured_mb": measured, "offloadable": offloadable}


class _Aborted(JobCancelled):
    """Raised inside the backend at a step the front answered with ``abort``."""


class _Steps:
    """The backend's ``check``: one call is one step reported to the front, carrying the
    chunks emitted since the previous step (one frame per step, chunks first)."""

    __slots__ = ("_link", "_move", "_pending", "n")

    def __init__(self, link: Link, move: Callable[[str], float]) -> None:
        self._link = link
        self._move = move  # offload / restore while the step waits (the job is paused)
        self._pending: list[Any] = []
        self.n = 0

    def __call__(self) -> None:
        self.n += 1
        link = self._link
        pending = self._pending
        if pending:
            link.send((wire.STEP, self.n, tuple(pending)))
            pending.clear()
        else:
            link.send((wire.STEP, self.n))
        while True:
            answer = link.recv()[0]
            if answer == wire.GO:
                return
            if answer == wire.ABORT:
                raise _Aborted("abandoned by the front")
            if answer == wire.STOP:
                raise _Stop
            if answer == wire.OFFLOAD:
                link.send((wire.OFFLOADED, self._move(OFFLOAD)))
            elif answer == wire.RESTORE:
                link.send((wire.RESTORED, self._move(RESTORE)))
            else:
                raise InferenceError(f"worker: unexpected answer {answer!r} at step {self.n}")

    def emit(self, chunk: Any) -> None:
        self._pending.append(chunk)

    def flush(self) -> None:
        """Chunks emitted after the last step go out before the result."""
        if self._pending:
            self._link.send((wire.CHUNK, tuple(self._pending)))
            self._pending.clear()


def _memory_mb(settings: Any) -> float | None:
    device = str(getattr(settings, "device", "cpu"))
    if device.startswith("cuda"):
        torch: Any = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return None
        index = int(device.split(":")[1]) if ":" in device else 0
        return float(torch.cuda.memory_allocated(index)) / 2**20
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def main() -> None:
    """Entry point: ``python -c '...main()' <fd>`` (see ProcessWorker.start)."""
    logging.basicConfig(level=logging.WARNING, format="worker %(process)d %(message)s")
    sock = socket.socket(fileno=int(sys.argv[1]))
    link = Link(sock)
    try:
        message = link.recv()
        if message[0] != wire.SPEC:
            raise SystemExit(f"worker: expected a spec, got {message[0]!r}")
        spec: WorkerSpec = message[1]
        os.environ.update(spec.env)
        Host(link, spec).serve()
    except _FrontGone:
        pass
    finally:
        sock.close()
    # skip the interpreter's teardown of torch and the weights (seconds on a busy box):
    # nothing of ours is left to flush but the standard streams
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
