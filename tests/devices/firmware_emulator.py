"""A xiaozhi ESP32 firmware emulator for tests, written from the firmware's behaviour (not code).

What the firmware does and this emulator does the same way:

- **OTA first** (``ota.cc``): ``POST /xiaozhi/ota/`` with ``Activation-Version``, ``Device-Id``
  (MAC), ``Client-Id`` (UUID), ``User-Agent`` (``board/version``), ``Accept-Language`` and
  ``Content-Type: application/json``, a system-info body; every string or number of the answer's
  ``websocket`` object is stored, so ``url``, ``token`` and ``version`` (the binary framing of
  the next connection; 0 or absent keeps the current one) take effect on the next connect.
- **Hello** with ``features.mcp`` and the uplink audio parameters (16 kHz, 20 or 60 ms frames);
  headers ``Authorization: Bearer``, ``Protocol-Version``, ``Device-Id``, ``Client-Id``.
- **Device states** idle → connecting → listening → speaking: ``tts start`` enters speaking;
  ``tts stop`` goes back to listening in auto mode (which sends ``listen start`` again) or idle
  in manual mode.
- **Wake word**: from idle, ``listen detect`` with the wake word, then ``listen start``; while
  listening or speaking, ``abort`` (reason ``wake_word_detected``) then ``listen start``.
- **MCP server**: answers ``initialize``, ``tools/list`` in pages of at most 8000 bytes (the
  next page's first tool name is ``nextCursor``) and ``tools/call``; an unknown tool is a
  JSON-RPC error -32601.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from devices.codec import OpusEncoder
from devices.simulator import UPLINK_RATE_HZ, DeviceSimulator

FIRMWARE_VERSION = "1.9.2"
TOOLS_PAGE_BYTES = 8000  # the firmware's max_payload_size of one tools/list answer


@dataclass
class EmuTool:
    name: str
    description: str
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    call: Callable[[dict[str, Any]], Any] = lambda args: True

    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": self.properties,
                "required": list(self.properties),
            },
        }


class FirmwareEmulator(DeviceSimulator):
    def __init__(
        self,
        http_base: str,
        *,
        mac: str | None = None,
        frame_ms: int = 60,
        tools: list[EmuTool] | None = None,
        padding_tools: int = 0,
    ) -> None:
        self.http_base = http_base
        self.mac = mac or "24:0a:c4:" + ":".join(uuid.uuid4().hex[i : i + 2] for i in (0, 2, 4))
        super().__init__("", device_id=self.mac, client_id=str(uuid.uuid4()))
        self._encoder = OpusEncoder(UPLINK_RATE_HZ, frame_ms)
        self.frame_ms = frame_ms
        self.state = "idle"
        self.listening_mode = "auto"
        self.volume = 70
        self.brightness = 80
        self.theme = "light"
        self.lamp = False  # the lamp of the firmware's lamp_controller.h
        self.tools = tools if tools is not None else self.default_tools()
        for i in range(padding_tools):  # boards register many tools: forces tools/list paging
            self.tools.append(EmuTool(f"self.board.extra_{i}", "An extra board tool. " * 20))
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.mcp_requests: list[dict[str, Any]] = []
        self.ota_answer: dict[str, Any] | None = None
        self.on_json = self._firmware_on_json

    def default_tools(self) -> list[EmuTool]:
        return [
            EmuTool(
                "self.get_device_status",
                "Provides the real-time information of the device (speaker volume, screen).",
                call=lambda args: json.dumps(
                    {
                        "audio_speaker": {"volume": self.volume},
                        "screen": {"brightness": self.brightness, "theme": self.theme},
                    }
                ),
            ),
            EmuTool(
                "self.audio_speaker.set_volume",
                "Set the volume of the audio speaker.",
                {"volume": {"type": "integer", "minimum": 0, "maximum": 100}},
                call=self._set_volume,
            ),
            EmuTool(
                "self.screen.set_brightness",
                "Set the brightness of the screen.",
                {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
                call=self._set_brightness,
            ),
            EmuTool(
                "self.screen.set_theme",
                "Set the theme of the screen. The theme can be `light` or `dark`.",
                {"theme": {"type": "string"}},
                call=self._set_theme,
            ),
            EmuTool(
                "self.lamp.get_state",
                "Get the power state of the lamp",
                call=lambda args: json.dumps({"power": self.lamp}),
            ),
            EmuTool(
                "self.lamp.turn_on", "Turn on the lamp", call=lambda args: self._set_lamp(True)
            ),
            EmuTool(
                "self.lamp.turn_off", "Turn off the lamp", call=lambda args: self._set_lamp(False)
            ),
        ]

    def _set_theme(self, args: dict[str, Any]) -> bool:
        self.theme = str(args["theme"])
        return True

    def _set_lamp(self, on: bool) -> bool:
        self.lamp = on
        return True

    def _set_volume(self, args: dict[str, Any]) -> bool:
        self.volume = int(args["volume"])
        return True

    def _set_brightness(self, args: dict[str, Any]) -> bool:
        self.brightness = int(args["brightness"])
        return True

    # -- OTA and connecting ----------------------------------------------------------------
    def system_info(self) -> dict[str, Any]:
        return {
            "version": 2,
            "language": "zh-CN",
            "flash_size": 16777216,
            "minimum_free_heap_size": "8318916",
            "mac_address": self.mac,
            "uuid": self.client_id,
            "chip_model_name": "esp32s3",
            "chip_info": {"model": 9, "cores": 2, "revision": 2, "features": 18},
            "application": {
                "name": "xiaozhi",
                "version": FIRMWARE_VERSION,
                "compile_time": "Jun  1 2025T12:00:00Z",
                "idf_version": "v5.4.1",
                "elf_sha256": "0" * 64,
            },
            "partition_table": [
                {"label": "ota_0", "type": 0, "subtype": 16, "address": 65536, "size": 6291456}
            ],
            "ota": {"label": "ota_0"},
            "board": {"type": "bread-compact-wifi", "ssid": "lab", "rssi": -50, "channel": 6},
        }

    def ota_headers(self) -> dict[str, str]:
        return {
            "Activation-Version": "1",
            "Device-Id": self.mac,
            "Client-Id": self.client_id,
            "User-Agent": f"bread-compact-wifi/{FIRMWARE_VERSION}",
            "Accept-Language": "zh-CN",
            "Content-Type": "application/json",
        }

    async def check_version(self) -> dict[str, Any]:
        """The OTA request; stores the websocket settings as the firmware does."""
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{self.http_base}/xiaozhi/ota/",
                content=json.dumps(self.system_info()),
                headers=self.ota_headers(),
            )
        r.raise_for_status()
        answer: dict[str, Any] = r.json()
        self.ota_answer = answer
        websocket = answer.get("websocket", {})
        self.url = str(websocket.get("url", self.url))
        token = websocket.get("token")
        self.token = str(token) if token else None
        version = websocket.get("version")
        if isinstance(version, int) and version != 0:
            self.protocol_version = version
        return answer

    async def boot(self) -> dict[str, Any]:
        """OTA, then open the audio channel (hello) as on the first wake word."""
        await self.check_version()
        self.state = "connecting"
        hello = await self.connect()
        self.state = "idle"
        return hello

    # -- what the device's main loop does --------------------------------------------------
    async def wake_word(self, word: str = "你好小智") -> None:
        if self.state == "idle":
            await self.listen("detect", None, text=word)
            await self.start_listening("auto")
        else:  # listening or speaking: interrupt, then listen again
            await self.abort("wake_word_detected")
            await self.start_listening("auto")

    async def start_listening(self, mode: str = "auto") -> None:
        self.listening_mode = mode
        self.state = "listening"
        await self.listen("start", mode)

    async def typed_turn(self, text: str, *, timeout_s: float = 10.0) -> list[str]:
        """Type a question (``listen detect`` with text, as the firmware's text input does) and
        return the sentences the reply spoke, once its ``tts stop`` arrived."""
        start = len(self.received)
        await self.listen("detect", None, text=text)
        await self.wait_message("tts", state="stop", start=start, timeout_s=timeout_s)
        return [
            r.message["text"]
            for r in self.received[start:]
            if r.message is not None
            and r.message.get("type") == "tts"
            and r.message.get("state") == "sentence_start"
        ]

    async def say(self, pcm: np.ndarray, *, speed: float = 1.0) -> float:
        """Stream speech (int16 16 kHz) as this device's Opus frames; returns the send end."""
        return await self.stream_pcm(pcm, speed=speed)

    async def _firmware_on_json(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "tts" and message.get("state") == "start":
            self.state = "speaking"
        elif kind == "tts" and message.get("state") == "stop" and self.state == "speaking":
            if self.listening_mode == "manual":
                self.state = "idle"
            else:
                await self.start_listening(self.listening_mode)
        elif kind == "mcp" and isinstance(message.get("payload"), dict):
            await self._mcp(message["payload"])

    # -- the MCP server ----------------------------------------------------------------------
    async def _mcp(self, request: dict[str, Any]) -> None:
        self.mcp_requests.append(request)
        method, rid = request.get("method"), request.get("id")
        params = request.get("params") or {}
        if rid is None or method is None:
            return  # a response or a notification: nothing to answer
        if method == "initialize":
            await self._reply(
                rid,
                result={
                    "protocolVersion": "2024-11-05",
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "bread-compact-wifi", "version": FIRMWARE_VERSION},
                },
            )
        elif method == "tools/list":
            await self._reply(rid, result=self._tools_page(str(params.get("cursor") or "")))
        elif method == "tools/call":
            name, args = str(params.get("name")), dict(params.get("arguments") or {})
            tool = next((t for t in self.tools if t.name == name), None)
            if tool is None:
                await self._reply(rid, error={"code": -32601, "message": f"Unknown tool: {name}"})
                return
            self.tool_calls.append((name, args))
            value = tool.call(args)
            if inspect.isawaitable(value):  # a slow tool: answered later, the socket goes on
                self._tasks.spawn(self._answer_later(rid, value), f"mcp-{rid}")
                return
            await self._answer_call(rid, value)
        else:
            await self._reply(rid, error={"code": -32601, "message": f"Method not found: {method}"})

    async def _answer_later(self, rid: Any, pending: Awaitable[Any]) -> None:
        await self._answer_call(rid, await pending)

    async def _answer_call(self, rid: Any, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        await self._reply(
            rid, result={"content": [{"type": "text", "text": text}], "isError": False}
        )

    def _tools_page(self, cursor: str) -> dict[str, Any]:
        names = [t.name for t in self.tools]
        start = names.index(cursor) if cursor in names else 0
        page: list[dict[str, Any]] = []
        size = 0
        next_cursor = ""
        for tool in self.tools[start:]:
            item = json.dumps(tool.schema())
            if page and size + len(item) + 30 > TOOLS_PAGE_BYTES:
                next_cursor = tool.name
                break
            page.append(tool.schema())
            size += len(item)
        result: dict[str, Any] = {"tools": page}
        if next_cursor:
            result["nextCursor"] = next_cursor
        return result

    async def _reply(
        self, rid: Any, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": rid}
        if error is not None:
            payload["error"] = error
        else:
            payload["result"] = result
        await self.send_json({"type": "mcp", "payload": payload})
