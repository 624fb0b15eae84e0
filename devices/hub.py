"""The device hub: WebSocket route, OTA endpoint, the directory of live devices, shutdown.

``bot/app.py`` mounts it on NoneBot's FastAPI app (one port for QQ and devices)::

    hub = DeviceHub(settings.devices, inference, scheduler)
    app.include_router(hub.router())
    ...
    await hub.close()
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket

from core.scheduler import Lane, Scheduler
from core.settings import DeviceSettings
from devices.connection import DeviceConnection, McpHandler
from devices.listener import ListenConfig
from devices.pipeline import PipelineConfig, wake_key
from devices.ports import VoiceInference
from devices.turn import TurnConfig

log = logging.getLogger(__name__)
OTA_PATH = "/xiaozhi/ota/"
# what clients send to the OTA endpoint (firmware ota.cc; browsers add Authorization)
OTA_ALLOWED_HEADERS = (
    "Content-Type, Device-Id, Client-Id, Activation-Version, Serial-Number, Accept-Language,"
    " Authorization"
)


class DeviceHub:
    def __init__(
        self,
        settings: DeviceSettings,
        inference: VoiceInference,
        scheduler: Scheduler | None = None,
        *,
        on_mcp: McpHandler | None = None,
    ) -> None:
        self.settings = settings
        self.inference = inference
        self.scheduler = scheduler  # for stats only; every model call goes through ``inference``
        self.on_mcp = on_mcp
        self._connections: dict[str, DeviceConnection] = {}  # by session id
        self._serving: dict[str, asyncio.Task[Any]] = {}
        self._closing = False

    def pipeline_config(self, device_id: str) -> PipelineConfig:
        s = self.settings
        owner = f"device:{device_id}"
        return PipelineConfig(
            listen=ListenConfig(
                owner=owner,
                lane=Lane.REALTIME,
                threshold=s.vad_threshold,
                min_speech_ms=s.min_speech_ms,
                min_silence_ms=s.min_silence_ms,
                preroll_ms=s.preroll_ms,
                speculate_after_ms=s.speculate_after_ms,
                max_utterance_s=s.max_utterance_s,
            ),
            turn=TurnConfig(
                owner=owner,
                lane=Lane.REALTIME,
                downlink_sample_rate_hz=s.downlink_sample_rate_hz,
                frame_ms=s.frame_ms,
                lead_ms=s.lead_ms,
                max_tokens=s.max_reply_tokens,
                max_sentences=s.max_reply_sentences,
                language=s.language,
                first_chunk_chars=s.first_chunk_chars,
                cancel_timeout_s=s.close_timeout_s,
                tool_timeout_s=s.mcp_timeout_s,
            ),
            max_exchanges=s.max_exchanges,
            wake_words=frozenset(wake_key(w) for w in s.wake_words),
            wake_greeting=s.wake_greeting,
            system_prompt=s.system_prompt,
        )

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_websocket_route(self.settings.ws_path, self._serve_socket)
        router.add_api_route(OTA_PATH, self._ota, methods=["POST"])
        router.add_api_route(OTA_PATH, self._ota_preflight, methods=["OPTIONS"])
        return router

    def _cors(self, request: Request, response: Response) -> bool:
        """Add the CORS headers for the request's Origin; False if that origin is not allowed
        (a request without Origin is not a browser's cross-origin call: always allowed)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        allowed = self.settings.ota_allowed_origins
        if "*" not in allowed and origin not in allowed:
            return False
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        if "*" not in allowed:
            response.headers["Vary"] = "Origin"
        return True

    async def _ota_preflight(self, request: Request) -> Response:
        """A browser's CORS preflight of the OTA POST (the web client sends Device-Id and
        Client-Id headers, which always need one)."""
        response = Response(status_code=204)
        if not self._cors(request, response):
            return Response(status_code=403)
        asked = request.headers.get("Access-Control-Request-Headers")
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = asked or OTA_ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        return response

    def snapshot(self) -> list[dict[str, object]]:
        return [conn.snapshot() for conn in self._connections.values()]

    def __len__(self) -> int:
        return len(self._connections)

    def connection(self, device_id: str) -> DeviceConnection | None:
        return next((c for c in self._connections.values() if c.device_id == device_id), None)

    async def _serve_socket(self, websocket: WebSocket) -> None:
        conn = DeviceConnection(
            websocket,
            settings=self.settings,
            inference=self.inference,
            pipeline_config=self.pipeline_config,
            on_mcp=self.on_mcp,
        )
        if self._closing:
            await websocket.close(code=1001, reason="server shutting down")
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[conn.session_id] = conn
        self._serving[conn.session_id] = task
        log.info(
            "device %s connected from %s (session %s)", conn.device_id, conn.remote, conn.session_id
        )
        try:
            await conn.serve()
        finally:
            self._connections.pop(conn.session_id, None)
            self._serving.pop(conn.session_id, None)
            log.info("device %s gone (session %s)", conn.device_id, conn.session_id)

    async def _ota(self, request: Request, response: Response) -> dict[str, Any]:
        """Firmware asks where to connect: websocket url and token, server time, firmware."""
        s = self.settings
        if s.public_ws_url:
            ws_url = s.public_ws_url
        else:
            scheme = "wss" if request.url.scheme == "https" else "ws"
            ws_url = f"{scheme}://{request.url.netloc}{s.ws_path}"
        token = s.tokens[0].get_secret_value() if s.tokens else ""
        now_s = time.time()
        # minutes east of UTC; the firmware adds it to the timestamp before settimeofday().
        # None is resolved to the host's zone by bot/ at start-up; a bare hub says UTC.
        offset_min = s.timezone_offset_min or 0
        log.info("ota from device %s", request.headers.get("Device-Id", "?"))
        self._cors(request, response)  # a refused origin gets no CORS header: the browser blocks
        return {
            # version: the firmware stores it and frames audio with it from the next connection
            "websocket": {"url": ws_url, "token": token, "version": s.ota_protocol_version},
            "server_time": {"timestamp": int(now_s * 1000), "timezone_offset": offset_min},
            "firmware": {"version": s.firmware_version, "url": s.firmware_url},
        }

    async def close(self) -> None:
        """Graceful shutdown: close every socket with 1001 and a reason, cancel turns, bounded."""
        self._closing = True
        connections = list(self._connections.values())
        await asyncio.gather(*(conn.close() for conn in connections))
        tasks = [t for t in self._serving.values() if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.close_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=self.settings.close_timeout_s)
