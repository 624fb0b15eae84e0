"""Paced audio sending: a short burst, then one frame per frame period on an absolute clock.

The device plays what it receives and buffers at most ~40 packets (2.4 s); extra packets are
dropped. ``play_end_s`` is when the device will have played everything sent so far: a frame
goes out once ``play_end_s - now <= lead_s`` (the burst covers ``lead_s`` of audio at the
start), then ``play_end_s`` advances by exactly one frame. Send times are ``t0 + k * frame``,
so sleeps never accumulate drift. If the producer falls behind and the device's buffer runs
dry, the clock re-anchors at ``now`` (a fresh burst).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

DEVICE_BUFFER_MS = 2400  # firmware keeps ~40 packets of 60 ms and drops the rest
_MIN_SLEEP_S = 0.001  # shorter waits are float noise of the clock arithmetic: send now


class PacedSender:
    __slots__ = (
        "_clock",
        "_send",
        "_sleep",
        "frame_s",
        "frames_sent",
        "lead_s",
        "max_ahead_s",
        "play_end_s",
    )

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[object]],
        *,
        frame_ms: int = 60,
        lead_ms: int = 300,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if lead_ms + frame_ms > DEVICE_BUFFER_MS:
            raise ValueError(
                f"lead_ms {lead_ms} would overrun the device's {DEVICE_BUFFER_MS} ms buffer"
            )
        self._send = send
        self._clock = clock
        self._sleep = sleep
        self.frame_s = frame_ms / 1000
        self.lead_s = lead_ms / 1000
        self.play_end_s: float | None = None
        self.frames_sent = 0
        self.max_ahead_s = 0.0  # the most audio ever queued on the device (for tests/benches)

    async def send(self, packet: bytes) -> None:
        now = self._clock()
        if self.play_end_s is None or self.play_end_s < now:
            self.play_end_s = now  # start, or underrun: the device's buffer is empty
        wait_s = self.play_end_s - self.lead_s - now
        if wait_s > _MIN_SLEEP_S:
            await self._sleep(wait_s)
            now = self._clock()
        await self._send(packet)
        self.play_end_s += self.frame_s
        self.frames_sent += 1
        self.max_ahead_s = max(self.max_ahead_s, self.play_end_s - now)

    async def drain(self) -> None:
        """Wait until the device has played everything sent."""
        if self.play_end_s is not None:
            remaining_s = self.play_end_s - self._clock()
            if remaining_s > 0:
                await self._sleep(remaining_s)
