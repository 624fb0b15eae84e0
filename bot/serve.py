"""Serving the app with uvicorn, draining before uvicorn closes the sockets.

On SIGTERM/SIGINT uvicorn's own shutdown closes every WebSocket with 1012 at once and only
then runs the lifespan shutdown, so queued QQ requests were dropped silently and devices cut
off mid-turn. :class:`DrainingServer` runs the app's drain (``bot.app.drain_of``) first:
admission stops, queued users are told, running turns finish within the drain time, and the
device and OneBot sockets are closed with 1001 and a reason. Then uvicorn proceeds as usual.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import uvicorn

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        drain: Callable[[], Awaitable[None]] | None,
        *,
        drain_timeout_s: float,
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_timeout_s = drain_timeout_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._drain is not None:
            log.info("draining before shutdown (at most %.1f s)", self._drain_timeout_s)
            try:
                await asyncio.wait_for(self._drain(), timeout=self._drain_timeout_s)
            except TimeoutError:
                log.error("drain did not finish within %.1f s", self._drain_timeout_s)
        await super().shutdown(sockets)
