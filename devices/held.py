"""A turn's device-bound output, held back until the turn is released.

A speculative turn (started at a pause, before the end of speech is certain) runs its whole
pipeline, but the messages it would send are kept in order; once the end is confirmed the
pipeline calls :meth:`HeldOutput.release` and they go out, in order, before anything later.
The audio pacer calls :meth:`wait_released` before its first frame, so ``tts start`` and the
burst leave at release and the pacing clock starts then. A turn that is never released sends
nothing. A normal turn is released from the start: everything goes straight to the outbox.

``release`` is synchronous (the pipeline calls it from VAD callbacks); whoever next waits for
the release or sends a message flushes what is held. A held turn that has something held always
has such a waiter: its pacer, or :meth:`Turn.run` waiting to end.
"""

from __future__ import annotations

import asyncio

from devices.ports import Gate, Outbox
from devices.protocol import ServerMessage


class HeldOutput:
    __slots__ = ("_flush_lock", "_flushed", "_gate", "_held", "_outbox", "_release")

    def __init__(self, outbox: Outbox, gate: Gate, *, held: bool) -> None:
        self._outbox = outbox
        self._gate = gate
        self._held: list[ServerMessage] = []
        self._release = asyncio.Event()
        self._flush_lock = asyncio.Lock()  # one flusher at a time keeps the held order
        self._flushed = not held  # nothing held any more: messages go straight out
        if not held:
            self._release.set()

    @property
    def released(self) -> bool:
        return self._release.is_set()

    def release(self) -> None:
        """The end of speech is confirmed: let the output through (flushed by the next waiter)."""
        self._release.set()

    async def wait_released(self) -> None:
        """Return once released and everything held has been sent (at once for a normal turn)."""
        await self._release.wait()
        if not self._flushed:
            await self._flush()

    async def send(self, message: ServerMessage) -> None:
        if not self._flushed:
            self._held.append(message)
            if self._release.is_set():
                await self._flush()
            return
        await self._outbox.send_message(message, gate=self._gate)

    async def send_audio(self, packet: bytes) -> None:
        await self.wait_released()
        await self._outbox.send_audio(packet, gate=self._gate)

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._held:
                await self._outbox.send_message(self._held.pop(0), gate=self._gate)
            self._flushed = True  # no await since the list was seen empty: order is kept
