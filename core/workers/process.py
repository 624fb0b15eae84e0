"""A :class:`core.workers.base.Worker` in a local child process, driven from the event loop.

The child is a fresh interpreter (``sys.executable -c ...``: no fork of the threaded front)
connected by a socketpair; frames are length-prefixed pickles (:mod:`core.workers.wire`). The
front reads them with asyncio streams, so a running call holds no thread: while the child
computes, the loop only waits for the next frame. Lock-step at every backend step: the child
reports ``step n`` and waits; the front awaits ``on_step(n)`` (the job's checkpoint: cancel,
pause) and answers ``go`` or ``abort``. End of file on the socket means the child died: the
running call raises WorkerDied and the state is DEAD until :meth:`ProcessWorker.start`.

A call whose awaiting task is cancelled (the scheduler cancels an ASYNC job hard) answers the
pending step with ``abort`` at once; the next call first drains what is left of it (at most one
step of the child's compute, bounded by ``abandon_timeout_s``; past it the child is killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from pathlib import Path
from typing import Any

from core.errors import JobCancelled, WorkerDied
from core.workers import wire
from core.workers.base import (
    ChunkCallback,
    StepCallback,
    WorkerCall,
    WorkerSpec,
    WorkerState,
)

log = logging.getLogger(__name__)

_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the ``core`` package
_BOOT = "import sys; sys.path.insert(0, sys.argv[2]); from core.workers.child import main; main()"


class ProcessWorker:
    """One model in one child process; one call at a time."""

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        start_timeout_s: float = 60.0,
        abandon_timeout_s: float = 30.0,
        python: str = sys.executable,
    ) -> None:
        self._spec = spec
        self._start_timeout_s = start_timeout_s
        self._abandon_timeout_s = abandon_timeout_s
        self._python = python
        self._state = WorkerState.NEW
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()  # one call (or start/stop) at a time
        self._abandoned = False  # a cancelled call is still unwinding in the child
        self._cancel_requested = False
        self._parked = False  # the running call waits at a step (its job's on_step runs)
        self.pid: int | None = None
        self.starts = 0

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def parked(self) -> bool:
        """The running call waits at a step (its job is paused or at its checkpoint)."""
        return self._parked

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._lock:
            if self._state in (WorkerState.IDLE, WorkerState.BUSY):
                return
            await self._spawn()

    async def _spawn(self) -> None:
        await self._reap()
        self._state = WorkerState.STARTING
        front, child = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                self._python,
                "-c",
                _BOOT,
                str(child.fileno()),
                _ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
            )
        except OSError as exc:
            front.close()
            self._state = WorkerState.DEAD
            raise WorkerDied(f"worker {self.name}: could not start: {exc}") from exc
        finally:
            child.close()
        self._proc = proc
        self._reader, self._writer = await asyncio.open_connection(sock=front)
        self._writer.write(wire.frame((wire.SPEC, self._spec)))
        try:
            ready = await asyncio.wait_for(self._recv(), self._start_timeout_s)
        except (TimeoutError, WorkerDied) as exc:
            await self._kill()
            raise WorkerDied(f"worker {self.name}: did not start: {exc!r}") from exc
        self.pid = int(ready[1])
        self.starts += 1
        self._abandoned = False
        self._state = WorkerState.IDLE
        log.info("worker %s started (pid %d)", self.name, self.pid)

    async def stop(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout_s)
        except TimeoutError:  # a call is stuck: kill without the lock
            await self._kill()
            self._state = WorkerState.STOPPED
            return
        try:
            proc, writer = self._proc, self._writer
            if proc is not None and proc.returncode is None and writer is not None:
                with contextlib.suppress(OSError):
                    writer.write(wire.frame((wire.STOP,)))
                try:
                    await asyncio.wait_for(proc.wait(), timeout_s)
                except TimeoutError:
                    log.warning("worker %s did not stop in %.1f s: killed", self.name, timeout_s)
            await self._kill()
            self._state = WorkerState.STOPPED
        finally:
            self._lock.release()

    async def kill(self) -> None:
        """Kill the process now (tests, a stuck call); the running call raises WorkerDied."""
        self.terminate()

    def terminate(self) -> None:
        """Kill the process (sync: eviction under the manager's lock); state DEAD at once."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if self._state is not WorkerState.STOPPED:
            self._state = WorkerState.DEAD

    async def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await self._reap()

    async def _reap(self) -> None:
        writer, proc = self._writer, self._proc
        self._reader = self._writer = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        if proc is not None:
            await proc.wait()
        self._proc = None

    # -- calls -------------------------------------------------------------------------------
    async def cancel(self) -> None:
        if self._state is WorkerState.BUSY:
            self._cancel_requested = True

    async def call(
        self, call: WorkerCall, *, on_step: StepCallback, on_chunk: ChunkCallback
    ) -> Any:
        async with self._lock:
            if self._state is not WorkerState.IDLE and not self._abandoned:
                raise WorkerDied(f"worker {self.name} is {self._state.value}: start() it first")
            proc = self._proc
            if self._state is WorkerState.DEAD or proc is None or proc.returncode is not None:
                await self._died()
                raise WorkerDied(f"worker {self.name} (pid {self.pid}) died while idle")
            if self._abandoned:
                await self._drain_abandoned()
            self._state = WorkerState.BUSY
            self._cancel_requested = False
            try:
                result = await self._exchange(call, on_step, on_chunk)
            except asyncio.CancelledError:
                self._abandon()  # stays BUSY until the next call drained it
                raise
            except WorkerDied:
                await self._died()
                raise
            except BaseException:
                self._settled()
                raise
            self._settled()
            return result

    def _settled(self) -> None:
        if self._state is WorkerState.BUSY:
            self._state = WorkerState.IDLE

    async def _exchange(
        self, call: WorkerCall, on_step: StepCallback, on_chunk: ChunkCallback
    ) -> Any:
        writer = self._writer
        assert writer is not None
        await self._send(wire.frame((wire.CALL, call)))
        recv = self._recv
        while True:
            message = await recv()
            kind = message[0]
            if kind == wire.STEP:
                try:
                    if len(message) > 2:  # the chunks emitted during this step come first
                        for chunk in message[2]:
                            await on_chunk(chunk)
                    if self._cancel_requested:
                        raise JobCancelled(f"worker {self.name}: call cancelled")
                    self._parked = True
                    try:
                        await on_step(message[1])
                    finally:
                        self._parked = False
                except asyncio.CancelledError:
                    raise
                except BaseException:
                    writer.write(wire.ABORT_FRAME)
                    await self._until_end()  # at most what is left of this step
                    raise
                writer.write(wire.GO_FRAME)
            elif kind == wire.CHUNK:  # chunks emitted after the last step, before the result
                try:
                    for chunk in message[1]:
                        await on_chunk(chunk)
                except asyncio.CancelledError:
                    raise
                except BaseException:
                    await self._until_end()  # read the result: the next call must not see it
                    raise
            elif kind == wire.RESULT:
                return message[1]
            elif kind == wire.ERROR:
                raise message[1]
            elif kind == wire.ABORTED:
                raise JobCancelled(f"worker {self.name}: call abandoned")
            else:
                raise WorkerDied(f"worker {self.name}: unexpected frame {kind!r}")

    async def at_step(self, command: str) -> float:
        """While the running call waits at a step (:attr:`parked`: its job is paused), move
        the model's weights in the worker: ``wire.OFFLOAD`` to host memory, ``wire.RESTORE``
        back; the seconds it took. The step keeps waiting for its go/abort afterwards. Only
        the job's own ``on_step`` (or what it awaits) calls this: nothing else reads then."""
        if not self._parked or self._writer is None:
            raise WorkerDied(f"worker {self.name}: no call waits at a step")
        await self._send(wire.frame((command,)))
        reply = await self._recv()
        expected = wire.OFFLOADED if command == wire.OFFLOAD else wire.RESTORED
        if reply[0] != expected:  # the move failed inside the backend: the call is gone
            self.terminate()
            raise WorkerDied(f"worker {self.name}: {command} at a step failed: {reply!r:.200}")
        return float(reply[1])

    def _abandon(self) -> None:
        """The awaiting task was cancelled mid-call: stop the child at its current step."""
        self._abandoned = True
        writer = self._writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(OSError):
                writer.write(wire.ABORT_FRAME)

    async def _drain_abandoned(self) -> None:
        """Read what is left of an abandoned call (answering steps with abort)."""
        try:
            await asyncio.wait_for(self._until_end(), self._abandon_timeout_s)
        except (TimeoutError, WorkerDied) as exc:
            log.warning("worker %s: an abandoned call did not end: killed", self.name)
            await self._died()
            raise WorkerDied(f"worker {self.name}: an abandoned call did not end") from exc
        self._abandoned = False

    async def _until_end(self) -> None:
        writer = self._writer
        assert writer is not None
        while True:
            message = await self._recv()
            kind = message[0]
            if kind == wire.STEP:
                writer.write(wire.ABORT_FRAME)
            elif kind in (wire.RESULT, wire.ERROR, wire.ABORTED):
                return

    async def _send(self, data: bytes) -> None:
        writer = self._writer
        assert writer is not None
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            raise WorkerDied(f"worker {self.name}: pipe closed: {exc}") from exc

    async def _recv(self) -> tuple[Any, ...]:
        reader = self._reader
        if reader is None:
            raise WorkerDied(f"worker {self.name} has no process")
        try:
            header = await reader.readexactly(wire.HEADER_BYTES)
            body = await reader.readexactly(wire.body_length(header))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self._exit_code()
            raise WorkerDied(f"worker {self.name} (pid {self.pid}) died: exit code {code}") from exc
        return wire.load(body)

    async def _exit_code(self) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        try:
            return await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            return await proc.wait()

    async def _died(self) -> None:
        await self._kill()
        self._abandoned = False
        self._state = WorkerState.DEAD
        log.warning("worker %s died; it restarts on its next use", self.name)
