"""One device WebSocket: handshake checks, hello, receive loop, ordered sender, idle timeout.

Bad input never crashes the hub: malformed JSON, unknown types and invalid Opus get an ``error``
message and the session continues; binary before hello, a wrong protocol version, a bad token
and oversized frames close this socket with a clear code and reason. Other devices are
unaffected (each socket runs in its own handler; nothing here blocks the loop).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from core.errors import ProtocolError
from core.settings import DeviceSettings
from devices.auth import DeviceAuth, Verdict, valid_id
from devices.codec import OpusDecoder
from devices.mcp import McpClient
from devices.pipeline import PipelineConfig, VoicePipeline
from devices.ports import Gate, VoiceInference
from devices.protocol import (
    FRAME_TYPE_JSON,
    SUPPORTED_VERSIONS,
    Abort,
    AudioParams,
    Error,
    HelloIn,
    HelloOut,
    Listen,
    Mcp,
    ServerMessage,
    pack_frame,
    parse_device_message,
    unpack_frame,
)
from devices.ratelimit import TokenBucket
from devices.session import SessionState, SessionStateMachine
from devices.tasks import TaskOwner

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutdown
CLOSE_TOO_BIG = 1009
CLOSE_BAD_REQUEST = 4400  # binary before hello, unsupported protocol version
CLOSE_UNAUTHORIZED = 4401
CLOSE_TIMEOUT = 4408  # no hello in time
CLOSE_REPLACED = 4409  # the same device connected again (a newer socket won)
RATE_NOTICE_INTERVAL_S = 1.0  # the sender of too much audio is told at most this often
_SEND_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)  # the peer went away mid-send

McpHandler = Callable[["DeviceConnection", dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Closing(Exception):
    """Raised inside the loop to close with ``code``/``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _header(websocket: WebSocket, name: str) -> str | None:
    """A handshake header, else the query parameter browsers use (``device-id``, ``device_id``)."""
    value = websocket.headers.get(name)
    for key in (name, name.lower(), name.lower().replace("-", "_")):
        value = value or websocket.query_params.get(key)
    return value.strip() if value else None


class DeviceConnection:
    def __init__(
        self,
        websocket: WebSocket,
        *,
        settings: DeviceSettings,
        inference: VoiceInference,
        pipeline_config: Callable[[str], PipelineConfig],
        on_mcp: McpHandler | None = None,
    ) -> None:
        self.websocket = websocket
        self.settings = settings
        self.session_id = uuid.uuid4().hex
        self.device_id = _header(websocket, "Device-Id") or f"anon-{self.session_id[:8]}"
        self.client_id = _header(websocket, "Client-Id") or ""
        self.remote = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else ""
        self.connected_since = time.time()
        self.protocol_version = 1
        self.state = SessionStateMachine()
        self.tasks = TaskOwner(f"device:{self.device_id}")
        self._inference = inference
        self._pipeline_config = pipeline_config
        self._on_mcp = on_mcp
        self._send_lock = asyncio.Lock()
        self._last_activity_s = time.monotonic()
        self._decoder = OpusDecoder(16_000)
        self._mcp_started = False
        self.pipeline: VoicePipeline | None = None
        self.mcp: McpClient | None = None  # the device's tool server, if its hello has mcp
        self.invalid_opus_frames = 0
        self.dropped_audio_frames = 0  # over the per-socket audio rate
        rate = settings.max_audio_frames_per_s
        self._frame_rate = TokenBucket(rate, burst=rate)  # one second of burst
        byte_rate = settings.max_audio_bytes_per_s
        self._byte_rate = TokenBucket(byte_rate, burst=byte_rate)
        self._rate_told_s = -RATE_NOTICE_INTERVAL_S

    def snapshot(self) -> dict[str, object]:
        return {
            "device_id": self.device_id,
            "client_id": self.client_id,
            "session_id": self.session_id,
            "state": self.state.state.value,
            "protocol_version": self.protocol_version,
            "connected_since": self.connected_since,
            "remote": self.remote,
            # names only: the dashboard shows every field of a device in one table row
            "mcp_tools": [t.name for t in self.mcp.tools] if self.mcp is not None else [],
            "dropped_audio_frames": self.dropped_audio_frames,
        }

    # -- sending (one writer at a time, in order) ------------------------------------------
    async def send_message(self, message: ServerMessage, *, gate: Gate | None = None) -> bool:
        payload = message.model_copy(update={"session_id": self.session_id}).to_json()
        return await self._send(payload, gate)

    async def send_audio(self, packet: bytes, *, gate: Gate | None = None) -> bool:
        return await self._send(pack_frame(self.protocol_version, packet), gate)

    async def _send(self, data: str | bytes, gate: Gate | None) -> bool:
        async with self._send_lock:
            if self.state.closed or (gate is not None and not gate()):
                return False
            try:
                if isinstance(data, str):
                    await self.websocket.send_text(data)
                else:
                    await self.websocket.send_bytes(data)
            except _SEND_ERRORS as exc:
                log.info("%s: send failed, peer gone: %s", self.device_id, exc)
                return False
            self._last_activity_s = time.monotonic()
            return True

    # -- serving -------------------------------------------------------------------------------
    def check_handshake(self, auth: DeviceAuth | None = None) -> Verdict:
        """Headers (or query parameters): ids, protocol version and token. Raises Closing.

        The hub calls this before accepting the WebSocket, so a stranger is refused with an
        HTTP status instead of being upgraded first."""
        for name, value in (("Device-Id", self.device_id), ("Client-Id", self.client_id)):
            if value and not valid_id(value):
                raise Closing(CLOSE_BAD_REQUEST, f"invalid {name} header")
        version = _header(self.websocket, "Protocol-Version") or "1"
        # isdigit() alone admits "²" and other Unicode digits that int() rejects
        number = int(version) if version.isascii() and version.isdigit() and len(version) < 4 else 0
        if number not in SUPPORTED_VERSIONS:
            shown = version[:16]
            raise Closing(
                CLOSE_BAD_REQUEST, f"unsupported protocol version {shown!r}; use 1, 2 or 3"
            )
        self.protocol_version = number
        if auth is None or not auth.required:
            return Verdict(True)
        header = _header(self.websocket, "Authorization") or ""
        token = header.removeprefix("Bearer ").strip()
        verdict = auth.verify(token, self.client_id, self.device_id)
        if not verdict.ok:
            raise Closing(CLOSE_UNAUTHORIZED, verdict.reason)
        return verdict

    async def serve(self) -> None:
        """Run the session to its end (the handshake was checked by the hub's route)."""
        await self.websocket.accept()
        try:
            await self._hello()
            await self._loop()
        except Closing as closing:
            log.warning(
                "%s (%s): closing %d: %s", self.device_id, self.remote, closing.code, closing.reason
            )
            await self._close(closing.code, closing.reason)
        except WebSocketDisconnect:
            log.info("%s: disconnected", self.device_id)
        finally:
            await self.shutdown()

    async def _hello(self) -> None:
        deadline_s = time.monotonic() + self.settings.hello_timeout_s
        while True:
            remaining_s = deadline_s - time.monotonic()
            try:
                event = await asyncio.wait_for(
                    self.websocket.receive(), timeout=max(remaining_s, 0.0)
                )
            except TimeoutError:
                raise Closing(
                    CLOSE_TIMEOUT, f"no hello within {self.settings.hello_timeout_s:g} s"
                ) from None
            if event["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(event.get("code", CLOSE_NORMAL))
            if event.get("bytes") is not None:
                raise Closing(CLOSE_BAD_REQUEST, "binary frame before hello")
            text = event.get("text") or ""
            self._check_size(len(text.encode()))  # before parsing: the limit applies from frame 1
            try:
                message = parse_device_message(text)
            except ProtocolError as exc:
                await self.send_message(Error(code=exc.code, message=exc.message))
                continue
            if isinstance(message, HelloIn):
                await self._answer_hello(message)
                return
            await self.send_message(
                Error(code="protocol", message=f"expected hello, got {message.type!r}")
            )

    async def _answer_hello(self, hello: HelloIn) -> None:
        if hello.version not in SUPPORTED_VERSIONS:
            raise Closing(
                CLOSE_BAD_REQUEST, f"unsupported protocol version {hello.version}; use 1, 2 or 3"
            )
        if self.pipeline is None:
            if hello.features.get("mcp") is True:
                self.mcp = McpClient(
                    self._send_mcp,
                    owner=f"device:{self.device_id}",
                    timeout_s=self.settings.mcp_timeout_s,
                )
            self.pipeline = VoicePipeline(
                inference=self._inference,
                outbox=self,
                state=self.state,
                config=self._pipeline_config(self.device_id),
                tasks=self.tasks,
                tools=self.mcp,
            )
            self.state.move(SessionState.READY)
        downlink = AudioParams(
            sample_rate=self.settings.downlink_sample_rate_hz, frame_duration=self.settings.frame_ms
        )
        await self.send_message(HelloOut(audio_params=downlink))
        if self.mcp is not None and not self.mcp.ready.is_set() and not self._mcp_started:
            self._mcp_started = True  # after our hello: the firmware is ready for requests
            self.tasks.spawn(self._discover_tools(self.mcp, self.pipeline), "mcp-discovery")

    @staticmethod
    async def _discover_tools(mcp: McpClient, pipeline: VoicePipeline) -> None:
        await mcp.start()
        await pipeline.warm_tool_prompt()

    async def _send_mcp(self, payload: dict[str, Any]) -> bool:
        return await self.send_message(Mcp(type="mcp", payload=payload))

    async def _loop(self) -> None:
        idle_s = self.settings.idle_timeout_s
        goodbye: asyncio.Task[object] | None = None
        while True:
            if goodbye is not None and goodbye.done():
                raise Closing(CLOSE_NORMAL, "idle: said goodbye")
            remaining_s = self._last_activity_s + idle_s - time.monotonic()
            if remaining_s <= 0 and goodbye is None and self._hears_speech():
                self._last_activity_s = time.monotonic()  # a turn is running (a slow model)
                continue
            if remaining_s <= 0 and goodbye is None:
                goodbye = self._say_goodbye()
                if goodbye is None:
                    raise Closing(CLOSE_NORMAL, f"idle for {idle_s:g} s")
            try:
                event = await asyncio.wait_for(
                    self.websocket.receive(), timeout=max(remaining_s, 0.05)
                )
            except TimeoutError:
                continue
            if event["type"] == "websocket.disconnect":
                return
            data: bytes | None = event.get("bytes")
            if data is None or self._hears_speech():
                # a listening device streams its microphone all the time: silence is idle
                self._last_activity_s = time.monotonic()
            text: str | None = event.get("text")
            self._check_size(len(data) if data is not None else len((text or "").encode()))
            try:
                if data is not None:
                    await self._on_binary(data)
                else:
                    await self._on_text(text or "")
            except ProtocolError as exc:
                log.info("%s: bad input: %s", self.device_id, exc)
                await self.send_message(Error(code=exc.code, message=exc.message))
            except Closing:
                raise
            except Exception as exc:  # a bug handling one message must not end the session
                log.exception("%s: message handling crashed", self.device_id)
                message = f"internal error: {type(exc).__name__}"
                await self.send_message(Error(code="internal", message=message))

    def _check_size(self, size: int) -> None:
        if size > self.settings.max_frame_bytes:
            raise Closing(
                CLOSE_TOO_BIG, f"frame of {size} bytes exceeds {self.settings.max_frame_bytes}"
            )

    def _hears_speech(self) -> bool:
        return self.pipeline is not None and (
            self.pipeline.listener.in_speech or self.pipeline.turn is not None
        )

    def _say_goodbye(self) -> asyncio.Task[object] | None:
        """Idle: end as the peer server does, with a spoken goodbye, then a normal close (the
        firmware drops a channel silent for 120 s on its own, which clients log as an error)."""
        text = self.settings.idle_goodbye
        if not text or self.pipeline is None:
            return None
        task = self.pipeline.say(text)
        if task is not None:
            log.info("%s: idle, saying goodbye", self.device_id)
        return task

    async def _on_text(self, text: str | bytes) -> None:
        message = parse_device_message(text)
        assert self.pipeline is not None
        if isinstance(message, Listen):
            await self.pipeline.on_listen(message)
        elif isinstance(message, Abort):
            await self.pipeline.on_abort(message)
        elif isinstance(message, Mcp):
            await self._mcp(message)
        else:
            await self._answer_hello(message)

    async def _on_binary(self, data: bytes) -> None:
        frame = unpack_frame(self.protocol_version, data)
        if frame.frame_type == FRAME_TYPE_JSON:
            await self._on_text(frame.payload)
            return
        # before decoding: a flood of tiny frames must not cost CPU (checked in this order so
        # a dropped frame spends no byte budget)
        if not (self._frame_rate.take() and self._byte_rate.take(len(frame.payload))):
            self.dropped_audio_frames += 1
            now_s = time.monotonic()
            if now_s - self._rate_told_s >= RATE_NOTICE_INTERVAL_S:
                self._rate_told_s = now_s
                await self.send_message(
                    Error(
                        code="rate_limited",
                        message=f"audio over {self.settings.max_audio_frames_per_s:g} frames or"
                        f" {self.settings.max_audio_bytes_per_s} bytes per second: dropped"
                        f" {self.dropped_audio_frames} frames so far",
                    )
                )
            return
        try:
            pcm = self._decoder.decode(frame.payload)
        except ProtocolError:
            self.invalid_opus_frames += 1
            raise
        assert self.pipeline is not None
        self.pipeline.on_audio(pcm)

    async def _mcp(self, message: Mcp) -> None:
        if self.mcp is not None and self.mcp.on_message(message.payload):
            return  # an answer to one of our requests (or a notification)
        if self._on_mcp is None:
            log.debug("%s: mcp message without a handler: %s", self.device_id, message.payload)
            return
        reply = await self._on_mcp(self, message.payload)
        if reply is not None:
            await self.send_message(Mcp(type="mcp", payload=reply))

    # -- closing -------------------------------------------------------------------------------
    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self.state.closed:
                return
            try:
                await self.websocket.close(code=code, reason=reason)
            except _SEND_ERRORS as exc:
                log.debug("%s: close failed: %s", self.device_id, exc)

    async def close(
        self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Tell the device (close frame with a reason), then stop the session."""
        await self._close(code, reason)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel the turn and every task of this session (bounded by close_timeout_s)."""
        if self.mcp is not None:
            self.mcp.close()
        if self.pipeline is not None:
            await self.pipeline.close()
        if not self.state.closed:
            self.state.move(SessionState.CLOSED)
        await self.tasks.cancel_all(self.settings.close_timeout_s)
