"""A xiaozhi device simulator: a real ``websockets`` client speaking the protocol as firmware does.

No compression (firmware never negotiates it); headers ``Authorization``, ``Protocol-Version``,
``Device-Id``, ``Client-Id``; hello with 16 kHz 60 ms Opus uplink; binary framing v1/v2/v3.
It streams PCM (e.g. a WAV) as real Opus frames on an absolute 60 ms clock (or ``speed`` times
faster), and records every message, every audio packet with its arrival time, and the decoded
downlink audio. Used by tests, benches and ``xiaoyou simulate-device``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.models.audio import voiced_frames
from devices.codec import FRAME_MS, OpusDecoder, OpusEncoder, resample_linear
from devices.protocol import FRAME_TYPE_OPUS, pack_frame, unpack_frame
from devices.tasks import TaskOwner

UPLINK_RATE_HZ = 16_000


@dataclass(frozen=True, slots=True)
class Received:
    at_s: float  # time.monotonic()
    message: dict[str, Any] | None = None  # a JSON message
    packet: bytes | None = None  # an Opus packet


@dataclass(slots=True)
class Conversation:
    """What one utterance got back, with monotonic timestamps."""

    speech_end_s: float
    stt: str | None = None
    sentences: list[str] = field(default_factory=list)
    emotion: str | None = None
    first_audio_s: float | None = None
    tts_stop_s: float | None = None
    packets: int = 0
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))

    @property
    def first_audio_latency_s(self) -> float | None:
        return None if self.first_audio_s is None else self.first_audio_s - self.speech_end_s


def trailing_silence_s(pcm: np.ndarray, sample_rate_hz: int = UPLINK_RATE_HZ) -> float:
    """Seconds after the last voiced 10 ms of ``pcm`` (RMS above 2 % of the loudest 10 ms)."""
    voiced = voiced_frames(pcm, sample_rate_hz, 0.02)
    if voiced.size == 0:
        return len(pcm) / sample_rate_hz
    return (len(pcm) - (int(voiced[-1]) + 1) * (sample_rate_hz // 100)) / sample_rate_hz


def read_wav_16k(path: Path) -> np.ndarray:
    """A mono 16-bit WAV as int16 at 16 kHz."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    if channels > 1:
        pcm = pcm.reshape(-1, channels)[:, 0].copy()
    return resample_linear(pcm, rate, UPLINK_RATE_HZ)


class DeviceSimulator:
    def __init__(
        self,
        url: str,
        *,
        device_id: str | None = None,
        client_id: str | None = None,
        token: str | None = None,
        protocol_version: int = 1,
        use_query: bool = False,
    ) -> None:
        self.url = url
        self.device_id = device_id or "sim:" + uuid.uuid4().hex[:12]
        self.client_id = client_id or str(uuid.uuid4())
        self.token = token
        self.protocol_version = protocol_version
        self.use_query = use_query
        self.session_id: str | None = None
        self.downlink_rate_hz = 24_000
        self.received: list[Received] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.hello_rtt_s: float | None = None
        self._ws: ClientConnection | None = None
        self._tasks = TaskOwner(f"sim:{self.device_id}")
        self._changed = asyncio.Event()
        self._encoder = OpusEncoder(UPLINK_RATE_HZ, FRAME_MS)
        self._decoder: OpusDecoder | None = None
        self._decoded: list[np.ndarray] = []
        # called with every JSON message as it arrives (a firmware emulator reacts there)
        self.on_json: Callable[[dict[str, Any]], Awaitable[None]] | None = self._answer_mcp

    # -- connection ------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the socket without saying hello (for tests of bad input)."""
        headers = {
            "Protocol-Version": str(self.protocol_version),
            "Device-Id": self.device_id,
            "Client-Id": self.client_id,
        }
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        url = self.url
        if self.use_query:
            query = "&".join(f"{k}={v}" for k, v in headers.items() if k != "Authorization")
            url = f"{url}{'&' if '?' in url else '?'}{query}"
            headers = {k: v for k, v in headers.items() if k == "Authorization"}
        self._ws = await connect(
            url, additional_headers=headers, compression=None, max_size=None, open_timeout=10
        )
        self._tasks.spawn(self._receive(), "receive")

    async def connect(self, *, timeout_s: float = 10.0) -> dict[str, Any]:
        """Open, say hello as firmware does, wait for the server's hello."""
        await self.open()
        return await self.connect_on_open(timeout_s=timeout_s)

    async def connect_on_open(self, *, timeout_s: float = 10.0) -> dict[str, Any]:
        """On a socket already open: say hello, wait for the server's hello."""
        start_s = time.monotonic()
        start = len(self.received)
        await self.send_json(
            {
                "type": "hello",
                "version": self.protocol_version,
                "features": {"mcp": True},
                "transport": "websocket",
                "audio_params": {
                    "format": "opus",
                    "sample_rate": UPLINK_RATE_HZ,
                    "channels": 1,
                    "frame_duration": self._encoder.frame_ms,
                },
            }
        )
        hello = await self.wait_message("hello", timeout_s=timeout_s, start=start)
        self.hello_rtt_s = time.monotonic() - start_s
        self.session_id = hello.get("session_id")
        self.downlink_rate_hz = int(hello.get("audio_params", {}).get("sample_rate", 24_000))
        self._decoder = OpusDecoder(self.downlink_rate_hz)
        return hello

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        await self._tasks.cancel_all(5.0)

    async def _receive(self) -> None:
        assert self._ws is not None
        try:
            async for data in self._ws:
                now_s = time.monotonic()
                message: dict[str, Any] | None = None
                if isinstance(data, str):
                    message = json.loads(data)
                else:
                    frame = unpack_frame(self.protocol_version, data)
                    if frame.frame_type != FRAME_TYPE_OPUS:
                        message = json.loads(frame.payload)
                    else:
                        self.received.append(Received(now_s, packet=frame.payload))
                        if self._decoder is not None:
                            self._decoded.append(self._decoder.decode(frame.payload))
                if message is not None:
                    self.received.append(Received(now_s, message=message))
                    if self.on_json is not None:
                        await self.on_json(message)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""
            self._changed.set()

    async def _answer_mcp(self, message: dict[str, Any]) -> None:
        """The hello announces MCP: answer ``initialize`` and ``tools/list`` (no tools)."""
        payload = message.get("payload")
        if message.get("type") != "mcp" or not isinstance(payload, dict) or "id" not in payload:
            return
        method = payload.get("method")
        if method == "initialize":
            result: dict[str, Any] = {
                "protocolVersion": "2024-11-05",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "xiaoyou-simulator", "version": "1"},
            }
        elif method == "tools/list":
            result = {"tools": []}
        else:
            return
        answer = {"jsonrpc": "2.0", "id": payload["id"], "result": result}
        # sent from its own task: the reader must never wait on a send (if the server waits on
        # us to read meanwhile, both sides stall and the close handshake times out)
        self._tasks.spawn(self._send_answer({"type": "mcp", "payload": answer}), "mcp-answer")

    async def _send_answer(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.send_json(message)

    @property
    def closed(self) -> bool:
        return self._ws is None or self.close_code is not None

    # -- sending ---------------------------------------------------------------------------
    async def send_json(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        if self.session_id is not None and message.get("type") != "hello":
            message = {"session_id": self.session_id, **message}
        await self._ws.send(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        assert self._ws is not None
        await self._ws.send(data)

    async def listen(self, state: str, mode: str | None = "auto", text: str | None = None) -> None:
        message: dict[str, Any] = {"type": "listen", "state": state}
        if mode is not None:
            message["mode"] = mode
        if text is not None:
            message["text"] = text
        await self.send_json(message)

    async def abort(self, reason: str | None = None) -> None:
        await self.send_json({"type": "abort", **({"reason": reason} if reason else {})})

    async def send_packet(self, packet: bytes) -> None:
        await self.send_raw(pack_frame(self.protocol_version, packet))

    async def stream_pcm(
        self, pcm: np.ndarray, *, speed: float = 1.0, until: str | None = None
    ) -> float:
        """Send ``pcm`` (int16 16 kHz) as 60 ms Opus frames on an absolute clock; returns the
        monotonic time the last frame left. ``until``: stop early once that message type arrives."""
        packets = self._encoder.encode(pcm) + self._encoder.flush()
        period_s = self._encoder.frame_ms / 1000 / speed
        start_s = time.monotonic()
        seen = len(self.received)
        for i, packet in enumerate(packets):
            delay_s = start_s + i * period_s - time.monotonic()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if until is not None and self._find(until, seen) is not None:
                break
            await self.send_packet(packet)
        return time.monotonic()

    async def stream_silence(
        self, duration_s: float, *, speed: float = 1.0, until: str | None = None
    ) -> float:
        return await self.stream_pcm(
            np.zeros(int(duration_s * UPLINK_RATE_HZ), dtype=np.int16), speed=speed, until=until
        )

    # -- waiting and reading ---------------------------------------------------------------
    def messages(self, kind: str | None = None, start: int = 0) -> list[dict[str, Any]]:
        return [
            r.message
            for r in self.received[start:]
            if r.message is not None and (kind is None or r.message.get("type") == kind)
        ]

    def _find(self, kind: str, start: int, **fields: Any) -> Received | None:
        for record in self.received[start:]:
            m = record.message
            if (
                m is not None
                and m.get("type") == kind
                and all(m.get(k) == v for k, v in fields.items())
            ):
                return record
        return None

    async def wait_message(
        self, kind: str, *, timeout_s: float = 30.0, start: int = 0, **fields: Any
    ) -> dict[str, Any]:
        """The first message of ``kind`` (with ``fields``) at or after index ``start``."""
        deadline_s = time.monotonic() + timeout_s
        while (record := self._find(kind, start, **fields)) is None:
            if self.closed:
                raise ConnectionError(
                    f"closed ({self.close_code} {self.close_reason}) while waiting for {kind}"
                )
            self._changed.clear()
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                raise TimeoutError(f"no {kind} {fields or ''} within {timeout_s:g} s")
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=remaining_s)
            except TimeoutError:
                continue
        assert record.message is not None
        return record.message

    async def wait_closed(self, *, timeout_s: float = 10.0) -> tuple[int | None, str]:
        deadline_s = time.monotonic() + timeout_s
        while not self.closed and time.monotonic() < deadline_s:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=deadline_s - time.monotonic())
            except TimeoutError:
                break
        return self.close_code, self.close_reason

    def decoded_audio(self) -> np.ndarray:
        return np.concatenate(self._decoded) if self._decoded else np.zeros(0, dtype=np.int16)

    # -- one utterance, as a firmware in auto mode does it ---------------------------------
    async def converse(
        self,
        pcm: np.ndarray,
        *,
        mode: str = "auto",
        speed: float = 1.0,
        silence_s: float = 3.0,
        timeout_s: float = 60.0,
    ) -> Conversation:
        """listen start → speech → (auto: silence until ``tts start``; manual: listen stop) →
        wait for ``tts stop``. Returns what came back for this utterance."""
        start = len(self.received)
        decoded_before = len(self._decoded)
        await self.listen("start", mode)
        # the end of speech is the last voiced sample, not the end of the file: a clip's trailing
        # silence already counts toward the server's end-of-speech hangover
        speech_end_s = await self.stream_pcm(pcm, speed=speed)
        speech_end_s -= trailing_silence_s(pcm) / speed
        if mode == "manual":
            await self.listen("stop", mode)
        else:
            await self.stream_silence(silence_s, speed=speed, until="tts")
        await self.wait_message("tts", state="stop", start=start, timeout_s=timeout_s)
        result = Conversation(speech_end_s=speech_end_s)
        for record in self.received[start:]:
            m = record.message
            if record.packet is not None:
                result.packets += 1
                if result.first_audio_s is None:
                    result.first_audio_s = record.at_s
            elif m is not None and m.get("type") == "stt":
                result.stt = m.get("text")
            elif m is not None and m.get("type") == "llm":
                result.emotion = m.get("emotion")
            elif m is not None and m.get("type") == "tts" and m.get("state") == "sentence_start":
                result.sentences.append(str(m.get("text")))
            elif m is not None and m.get("type") == "tts" and m.get("state") == "stop":
                result.tts_stop_s = record.at_s
        if len(self._decoded) > decoded_before:
            result.audio = np.concatenate(self._decoded[decoded_before:])
        return result
