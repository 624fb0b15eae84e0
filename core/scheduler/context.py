"""The cooperative side of a running job: cancellation, streaming and preemption points.

Async jobs use ``await ctx.emit(x)`` and ``await ctx.checkpoint()``; blocking jobs on the
executor use ``ctx.emit_blocking(x)`` and ``ctx.checkpoint_blocking()`` (the latter is the
``check`` callable model backends call between tokens or denoising steps).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from core.errors import SchedulerError
from core.scheduler.channel import ChannelClosed

if TYPE_CHECKING:
    from core.scheduler.dispatch import Dispatcher
    from core.scheduler.job import Job


class JobContext:
    __slots__ = ("_dispatcher", "_job", "_loop", "_pausable", "_state", "cancel_error", "job_id")

    def __init__(self, job: Job, dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop) -> None:
        self.job_id = job.id
        self._job = job
        self._dispatcher = dispatcher  # pause(): the only thing a job asks of the scheduler
        self._loop = loop
        self.cancel_error: SchedulerError | None = None  # set when cancelled or expired
        self._pausable = False  # the job has reached a checkpoint: its code can pause
        self._state: StepState | None = None  # what its last blocking checkpoint saved

    @property
    def cancelled(self) -> bool:
        return self.cancel_error is not None

    def raise_if_cancelled(self) -> None:
        if self.cancel_error is not None:
            raise self.cancel_error

    # -- async jobs -------------------------------------------------------------------------
    async def emit(self, chunk: Any) -> None:
        """Hand a chunk to the consumer; waits while its buffer is full (backpressure). A job
        that has reached a checkpoint pauses there too when asked to yield while it waits (it
        keeps the chunk and offers it again when resumed)."""
        while not await self._offer(chunk):
            await self.checkpoint(self._state)

    async def _offer(self, chunk: Any) -> bool:
        """Put ``chunk``; False (not put) when asked to yield while the buffer is full."""
        self.raise_if_cancelled()
        try:
            put = await self._job.channel_for(self._loop).put(chunk, self._yield_due)
        except ChannelClosed:
            self.raise_if_cancelled()
            raise
        self.raise_if_cancelled()
        return put

    def _yield_due(self) -> bool:
        return self._pausable and self._job.yield_requested

    async def checkpoint(self, state: StepState | None = None) -> None:
        """A safe point: raises if cancelled; yields resources while a higher lane needs them
        (``state``: saved before the pause, restored after, as in :meth:`checkpoint_blocking`)."""
        pause, saved = self._arrive(state)
        if pause:
            await self._pause()
            if state is not None and saved is not None:
                state.restore_state(saved)

    def _arrive(self, state: StepState | None) -> tuple[bool, object | None]:
        """At a checkpoint: raise if cancelled; whether to pause here, and ``state``'s saved
        copy for that pause."""
        self.raise_if_cancelled()
        job = self._job
        self._pausable = True
        if state is not None:
            self._state = state
        if not job.yield_requested:
            return False, None
        saved = state.save_state() if state is not None and job.pauses_at_this_step() else None
        return True, saved

    async def _pause(self) -> None:
        if self._job.yield_requested:  # (a blocking job's request may be gone by now)
            await self._dispatcher.pause(self._job)
        self.raise_if_cancelled()

    # -- blocking jobs (called from an executor thread) ------------------------------------------
    def emit_blocking(self, chunk: Any) -> None:
        """:meth:`emit` from the job's thread. Asked to yield while the consumer's buffer is
        full (a device's LLM waiting for its TTS), it pauses like its last checkpoint did
        (saving that checkpoint's ``state``), instead of holding the model while it waits."""
        self.raise_if_cancelled()
        loop = self._loop
        while not asyncio.run_coroutine_threadsafe(self._offer(chunk), loop).result():
            self.checkpoint_blocking(self._state)

    def checkpoint_blocking(self, state: StepState | None = None) -> None:
        """A safe point of a blocking job. When the job pauses here and gives its model slot
        back, ``state`` (the backend) saves what another job's use would overwrite (a llama.cpp
        KV cache) before the pause and restores it after."""
        pause, saved = self._arrive(state)
        if pause:
            asyncio.run_coroutine_threadsafe(self._pause(), self._loop).result()
            if state is not None and saved is not None:
                state.restore_state(saved)


class StepState(Protocol):
    """Per-job state kept in a shared model object, saved across a pause (see above)."""

    def save_state(self) -> object: ...

    def restore_state(self, state: object) -> None: ...
