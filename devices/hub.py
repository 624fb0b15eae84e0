"""The device hub: WebSocket route, OTA endpoint, the directory of live devices, shutdown.

``bot/app.py`` mounts it on NoneBot's FastAPI app (one port for QQ and devices)::

    hub = DeviceHub(settings.devices, inference, scheduler)
    app.include_router(hub.router())
    ...
    await hub.close()
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.scheduler import Lane, Scheduler
from core.settings import DeviceSettings
from devices.auth import DeviceAuth, valid_id
from devices.connection import (
    CLOSE_BAD_REQUEST,
    CLOSE_GOING_AWAY,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    Closing,
    DeviceConnection,
    McpHandler,
)
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
ACTIVATE_PATH = OTA_PATH + "activate"  # firmware: the OTA URL plus "activate"
MAX_ACTIVATE_BODY_BYTES = 4096
CLOSE_CONFLICT = 4409  # refused: the device id is in use by another socket
# the HTTP status that refuses an upgrade, by the close code it stands for
_DENY_STATUS = {
    CLOSE_BAD_REQUEST: 400,
    CLOSE_UNAUTHORIZED: 401,
    CLOSE_CONFLICT: 409,
    CLOSE_GOING_AWAY: 503,
}


class ActivateBody(BaseModel):
    code: str = Field(..., min_length=1, max_length=32, description="the code the device shows")


def _ota_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


class DeviceHub:
    def __init__(
        self,
        settings: DeviceSettings,
        inference: VoiceInference,
        scheduler: Scheduler | None = None,
        *,
        on_mcp: McpHandler | None = None,
        state_path: Path | None = None,
        keeps_prompts: bool = True,
    ) -> None:
        """``keeps_prompts``: the LLM keeps evaluated prompts between requests (llama.cpp's
        prompt cache); a remote API does not, so the tools' warm-up would only cost tokens."""
        self.settings = settings
        self._keeps_prompts = keeps_prompts
        self.auth = DeviceAuth(settings, state_path)
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
                first_clause_hanzi=s.first_clause_hanzi,
                later_clause_hanzi=s.later_clause_hanzi,
                cancel_timeout_s=s.close_timeout_s,
                tool_timeout_s=s.mcp_timeout_s,
                keyword_intents=s.keyword_intents,
                clock_answers=s.clock_answers,
                utc_offset_min=s.timezone_offset_min or 0,
                synthesise_ahead=s.synthesise_ahead,
                llm_tools=s.llm_tools,
            ),
            max_exchanges=s.max_exchanges,
            wake_words=frozenset(wake_key(w) for w in s.wake_words),
            wake_greeting=s.wake_greeting,
            failure_reply=s.failure_reply,
            system_prompt=s.system_prompt,
            system_prompts=s.system_prompts,
            prefill_while_speaking=s.prefill_while_speaking,
            warm_tool_prompt=s.warm_tool_prompt and s.llm_tools and self._keeps_prompts,
        )

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_websocket_route(self.settings.ws_path, self._serve_socket)
        router.add_api_route(OTA_PATH, self._ota, methods=["POST"])
        router.add_api_route(OTA_PATH, self._ota_preflight, methods=["OPTIONS"])
        router.add_api_route(ACTIVATE_PATH, self._activate, methods=["POST"])
        return router

    def admin_router(self) -> APIRouter:
        """Device enrolment for the admin API; the caller mounts it under its guard."""
        router = APIRouter(prefix="/devices", tags=["admin"])

        @router.get("/activations", summary="Devices waiting for activation, and activated ones")
        async def activations() -> dict[str, object]:
            return {
                "pending": self.auth.pending(),
                "activated": self.auth.activated(),
                "allowed": sorted(self.settings.allowed_devices),
                "state_error": self.auth.state_error,
            }

        @router.post("/activate", summary="Activate the device showing this code")
        async def activate(body: ActivateBody) -> JSONResponse:
            device_id = await self.auth.approve(body.code.strip())
            if device_id is None:
                return JSONResponse(
                    {"error": {"code": "not_found", "message": "no device shows this code"}},
                    status_code=404,
                )
            return JSONResponse(
                {"device_id": device_id, "activated": True, "state_error": self.auth.state_error}
            )

        @router.delete("/{device_id}/activation", summary="Revoke a device's activation")
        async def revoke(device_id: str) -> JSONResponse:
            done = await self.auth.revoke(device_id)
            if done:
                conn = self.connection(device_id)
                if conn is not None:
                    await conn.close(CLOSE_UNAUTHORIZED, "device activation revoked")
            return JSONResponse({"device_id": device_id, "revoked": done})

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

    async def _deny(self, websocket: WebSocket, closing: Closing) -> None:
        """Refuse the upgrade with an HTTP status and a JSON reason (before ``accept``)."""
        status = _DENY_STATUS.get(closing.code, 400)
        log.warning(
            "device socket refused from %s: %d %s",
            websocket.client.host if websocket.client else "?",
            status,
            closing.reason,
        )
        body = {"error": {"code": closing.code, "message": closing.reason}}
        try:
            await websocket.send_denial_response(JSONResponse(body, status_code=status))
        except RuntimeError:  # the server lacks the denial-response extension: 403, no body
            await websocket.close(code=closing.code, reason=closing.reason)

    async def _serve_socket(self, websocket: WebSocket) -> None:
        conn = DeviceConnection(
            websocket,
            settings=self.settings,
            inference=self.inference,
            pipeline_config=self.pipeline_config,
            on_mcp=self.on_mcp,
        )
        if self._closing:
            await self._deny(websocket, Closing(CLOSE_GOING_AWAY, "server shutting down"))
            return
        try:
            verdict = conn.check_handshake(self.auth)
            await self._one_socket_per_device(conn, proven=verdict.per_device)
        except Closing as closing:
            await self._deny(websocket, closing)
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

    async def _one_socket_per_device(self, conn: DeviceConnection, *, proven: bool) -> None:
        """A device id holds one socket: a token that proves the id replaces the older socket
        (the device reconnected while its old socket is half-open); otherwise the newcomer is
        refused while the id is in use."""
        if self.settings.allow_shared_device_ids:
            return
        old = self.connection(conn.device_id)
        if old is None:
            return
        if not proven:
            raise Closing(CLOSE_CONFLICT, f"device id {conn.device_id!r} is already connected")
        log.info("device %s reconnected: closing its older socket", conn.device_id)
        await old.close(CLOSE_REPLACED, "replaced by a newer connection of this device")

    def _ws_url(self, request: Request) -> str:
        s = self.settings
        if s.public_ws_url:
            return s.public_ws_url
        scheme = "wss" if request.url.scheme == "https" else "ws"
        return f"{scheme}://{request.url.netloc}{s.ws_path}"

    async def _ota(self, request: Request) -> JSONResponse:
        """Firmware asks where to connect: websocket url and its own token, time, firmware.
        Browsers get the CORS headers for their origin (a refused origin gets none, so the
        browser blocks the answer)."""
        response = await self._ota_answer(request)
        self._cors(request, response)
        return response

    async def _ota_answer(self, request: Request) -> JSONResponse:
        """The OTA answer. A device the auth policy does not know yet gets an activation code
        instead of a token (see devices/auth.py)."""
        s = self.settings
        device_id = (request.headers.get("Device-Id") or "").strip()
        client_id = (request.headers.get("Client-Id") or "").strip()
        now_s = time.time()
        # minutes east of UTC; the firmware adds it to the timestamp before settimeofday().
        # None is resolved to the host's zone by bot/ at start-up; a bare hub says UTC.
        offset_min = s.timezone_offset_min or 0
        body: dict[str, Any] = {
            "server_time": {"timestamp": int(now_s * 1000), "timezone_offset": offset_min},
            "firmware": {"version": s.firmware_version, "url": s.firmware_url},
        }
        auth = self.auth
        if not auth.required:
            body["websocket"] = self._websocket_answer(request, "")
            log.info("ota from device %s (open hub)", device_id or "?")
            return JSONResponse(body)
        if not (valid_id(device_id) and valid_id(client_id)):
            return _ota_error(400, "Device-Id and Client-Id headers are required")
        if not auth.issues_tokens:  # static tokens only: provisioned by hand, never handed out
            body["websocket"] = self._websocket_answer(request, "")
            log.info("ota from device %s: no per-device tokens configured", device_id)
            return JSONResponse(body)
        if auth.allowed(device_id, client_id):
            token = auth.issue(client_id, device_id)
            body["websocket"] = self._websocket_answer(request, token)
            log.info("ota from device %s: token issued", device_id)
            return JSONResponse(body)
        if not s.activation:
            log.warning("ota from unknown device %s refused (not in allowed_devices)", device_id)
            return _ota_error(403, "this device is not allowed on this server")
        pending = auth.start_activation(device_id, client_id)
        body["activation"] = {
            "code": pending.code,
            "challenge": pending.challenge,
            "message": f"请在小优管理后台输入激活码 {pending.code}",
            "timeout_ms": int(s.activation_timeout_s * 1000),
        }
        log.info("ota from unknown device %s: activation pending", device_id)
        return JSONResponse(body)

    def _websocket_answer(self, request: Request, token: str) -> dict[str, Any]:
        # version: the firmware stores it and frames audio with it from the next connection
        return {
            "url": self._ws_url(request),
            "token": token,
            "version": self.settings.ota_protocol_version,
        }

    async def _activate(self, request: Request) -> JSONResponse:
        """Firmware polls here after showing the code: 202 pending, 200 activated."""
        device_id = (request.headers.get("Device-Id") or "").strip()
        client_id = (request.headers.get("Client-Id") or "").strip()
        challenge: str | None = None
        raw = await request.body()
        if len(raw) > MAX_ACTIVATE_BODY_BYTES:
            return _ota_error(413, "activation body too large")
        try:
            payload = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            payload = {}
        if isinstance(payload, dict) and isinstance(payload.get("challenge"), str):
            challenge = payload["challenge"]
        status = self.auth.poll_activation(device_id, client_id, challenge)
        if status == "activated":
            return JSONResponse({"status": "activated"})
        if status == "pending":
            return JSONResponse({"status": "pending"}, status_code=202)
        return _ota_error(404, "no activation in progress for this device: ask OTA again")

    def stop_admission(self) -> None:
        """Shutdown has begun: new sockets are refused (HTTP 503), live ones keep going."""
        self._closing = True

    async def wait_turns(self, timeout_s: float) -> bool:
        """Shutdown: wait (bounded) until no device is in the middle of a turn."""
        deadline_s = time.monotonic() + timeout_s
        while any(
            c.pipeline is not None and c.pipeline.turn is not None
            for c in self._connections.values()
        ):
            if time.monotonic() >= deadline_s:
                return False
            await asyncio.sleep(0.05)
        return True

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
