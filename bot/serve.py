"""Serving the app with uvicorn, draining before uvicorn closes the sockets.

On SIGTERM/SIGINT uvicorn's own shutdown closes every WebSocket with 1012 at once and only
then runs the lifespan shutdown, so queued QQ requests were dropped silently and devices cut
off mid-turn. :class:`DrainingServer` runs the app's drain (``bot.app.drain_of``) first:
admission stops, queued users are told, running turns finish within the drain time, and the
device and OneBot sockets are closed with 1001 and a reason. Then uvicorn proceeds as usual.

:class:`ConnectionGuard` bounds connections before any request is read: a handshake timeout,
caps in total and per address, and a bounded set of connections still waiting for their
first request (so thousands of idle sockets cannot exhaust file descriptors or lock out
``/healthz``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from bot.log_redact import uvicorn_log_config
from core.settings import ServerSettings, Settings

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


class ConnectionGuard:
    """Connection admission shared by every connection of one server.

    A connection is *pending* from accept until its first request head is complete; pending
    ones are closed after ``handshake_timeout_s`` and, beyond ``max_pending``, the oldest is
    dropped for the newcomer (an idle-socket flood then costs a bounded number of file
    descriptors and a real client such as a health check still gets in). Established ones
    (a request in progress, keep-alive, an upgraded WebSocket) are capped in total and per
    peer address; over a cap the newcomer gets ``503`` and is closed."""

    def __init__(self, settings: ServerSettings) -> None:
        self.handshake_timeout_s = settings.handshake_timeout_s
        self.max_total = settings.max_connections
        self.max_per_address = settings.max_connections_per_address
        self.max_pending = settings.max_pending_handshakes
        self.pending: OrderedDict[asyncio.Protocol, asyncio.Transport] = OrderedDict()
        self.refused = 0
        self.dropped = 0

    def admit(self, connections: set[Any], host: str) -> bool:
        established = [c for c in connections if c not in self.pending]
        if len(established) >= self.max_total:
            return False
        same = sum(1 for c in established if (getattr(c, "client", None) or ("",))[0] == host)
        return same < self.max_per_address

    def add_pending(self, protocol: asyncio.Protocol, transport: asyncio.Transport) -> None:
        self.pending[protocol] = transport
        while len(self.pending) > self.max_pending:
            _, oldest = self.pending.popitem(last=False)
            self.dropped += 1
            oldest.close()


_REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def guarded_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools or h11) with ``guard`` applied."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class Guarded(base):  # type: ignore[misc]
        _refused = False
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            peer = transport.get_extra_info("peername")
            host = str(peer[0]) if peer else ""
            if not guard.admit(self.server_state.connections, host):
                self._refused = True
                guard.refused += 1
                transport.write(_REFUSAL)
                transport.close()
                return
            super().connection_made(transport)
            guard.add_pending(self, transport)
            self._timer = self.loop.call_later(guard.handshake_timeout_s, self._handshake_late)

        def _handshake_late(self) -> None:
            if guard.pending.pop(self, None) is not None:
                guard.dropped += 1
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            upgraded = self.transport.get_protocol() is not self
            if self in guard.pending and (self.cycle is not None or upgraded):
                del guard.pending[self]
                if self._timer is not None:
                    self._timer.cancel()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            guard.pending.pop(self, None)
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

    return Guarded


class _DenialIsNotAnError(logging.Filter):
    """uvicorn logs ``ASGI callable returned without completing handshake`` at ERROR after
    every refused upgrade (401 to a stranger, 403 to a wrong OneBot token): expected here,
    and one ERROR per probe would drown real errors. The refusal itself is logged by us."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing handshake" not in record.getMessage()


def server_config(app: Any, settings: Settings, *, log_level: str | None = None) -> uvicorn.Config:
    """The uvicorn configuration ``xiaoyou serve`` runs with (timeouts, connection guard)."""
    return uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=log_level or settings.server.log_level.lower(),
        log_config=uvicorn_log_config(),  # ?token= / ?authorization= values never logged
        http=guarded_protocol(ConnectionGuard(settings.server)),
        ws="websockets-sansio",  # what the tests run; supports HTTP denial responses
        timeout_graceful_shutdown=int(drain_budget_s(settings)) + 5,
        ws_ping_interval=20.0,  # half-open WebSockets (a device lost its Wi-Fi) are found
        ws_ping_timeout=20.0,
    )


def drain_budget_s(settings: Settings) -> float:
    from bot.app import DRAIN_REPLY_S

    sched = settings.scheduler
    return sched.drain_timeout_s + sched.cancel_timeout_s + DRAIN_REPLY_S


def serve(app: Any, settings: Settings, *, log_level: str | None = None) -> None:
    """Run ``app`` until SIGINT/SIGTERM, draining first (see the module docstring)."""
    from bot.app import drain_of

    config = server_config(app, settings, log_level=log_level)
    config.load()  # configures uvicorn's loggers; the filter goes on after that
    logging.getLogger("uvicorn.error").addFilter(_DenialIsNotAnError())
    DrainingServer(config, drain_of(app), drain_timeout_s=drain_budget_s(settings) + 5).run()
