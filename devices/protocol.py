"""The xiaozhi wire protocol: pydantic models of every JSON message and binary framing v1/v2/v3.

Device → server: ``hello``, ``listen``, ``abort``, ``mcp``. Server → device: ``hello``, ``stt``,
``llm``, ``tts``, ``mcp``, ``system``, ``alert`` and our own ``error``. Unknown fields are ignored
(firmware adds features over time); unknown types and malformed JSON raise
:class:`core.errors.ProtocolError` with a message fit to send back to the device.

Binary frames (firmware ``protocols/websocket_protocol.cc``): v1 is raw Opus; v2 is a 16-byte
big-endian header (version u16, type u16, reserved u32, timestamp_ms u32, payload size u32); v3
is a 4-byte header (type u8, reserved u8, payload size u16). Type 0 is Opus, 1 is JSON.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from core.errors import ProtocolError

SUPPORTED_VERSIONS = frozenset({1, 2, 3})
FRAME_TYPE_OPUS = 0
FRAME_TYPE_JSON = 1
_V2_HEADER = struct.Struct(">HHIII")  # version, type, reserved, timestamp_ms, payload_size
_V3_HEADER = struct.Struct(">BBH")  # type, reserved, payload_size
MAX_MESSAGE_BYTES = 1024 * 1024  # no JSON message of the protocol comes near this


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    session_id: str | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


OPUS_SAMPLE_RATES_HZ = (8_000, 12_000, 16_000, 24_000, 48_000)  # the rates Opus codes at
OPUS_FRAME_MS = (10, 20, 40, 60, 80, 100, 120)  # whole-millisecond Opus packet durations


class AudioParams(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["opus"] = "opus"
    sample_rate: int = Field(16_000, description="Hz")
    channels: Literal[1] = 1
    frame_duration: int = Field(60, description="ms")

    @field_validator("sample_rate")
    @classmethod
    def _opus_rate(cls, value: int) -> int:
        if value not in OPUS_SAMPLE_RATES_HZ:
            raise ValueError(f"{value} Hz is not an Opus rate; use one of {OPUS_SAMPLE_RATES_HZ}")
        return value

    @field_validator("frame_duration")
    @classmethod
    def _opus_frame(cls, value: int) -> int:
        if value not in OPUS_FRAME_MS:
            raise ValueError(
                f"{value} ms is not an Opus frame duration; use one of {OPUS_FRAME_MS}"
            )
        return value


# -- device → server ---------------------------------------------------------------------------
class HelloIn(_Message):
    type: Literal["hello"]
    version: int = 1
    transport: Literal["websocket"] = "websocket"
    features: dict[str, Any] = Field(default_factory=dict)
    audio_params: AudioParams = Field(default_factory=AudioParams)


class Listen(_Message):
    type: Literal["listen"]
    state: Literal["start", "stop", "detect"]
    mode: Literal["auto", "manual", "realtime"] | None = None
    text: str | None = None  # the wake word with state "detect"


class Abort(_Message):
    type: Literal["abort"]
    reason: str | None = None


class Mcp(_Message):
    """JSON-RPC 2.0 in ``payload``; goes both ways."""

    type: Literal["mcp"]
    payload: dict[str, Any]


DeviceMessage = Annotated[HelloIn | Listen | Abort | Mcp, Field(discriminator="type")]
_DEVICE_ADAPTER: TypeAdapter[HelloIn | Listen | Abort | Mcp] = TypeAdapter(DeviceMessage)
DEVICE_TYPES = ("hello", "listen", "abort", "mcp")


# -- server → device ---------------------------------------------------------------------------
class HelloOut(_Message):
    type: Literal["hello"] = "hello"
    transport: Literal["websocket"] = "websocket"
    audio_params: AudioParams = Field(default_factory=AudioParams)


class Stt(_Message):
    type: Literal["stt"] = "stt"
    text: str


class Llm(_Message):
    type: Literal["llm"] = "llm"
    emotion: str = "neutral"
    text: str = ""


class Tts(_Message):
    type: Literal["tts"] = "tts"
    state: Literal["start", "sentence_start", "stop"]
    text: str | None = None


class System(_Message):
    type: Literal["system"] = "system"
    command: str


class Alert(_Message):
    type: Literal["alert"] = "alert"
    status: str
    message: str
    emotion: str = "neutral"


class Error(_Message):
    """Not in the firmware's vocabulary (it ignores unknown types); tells a developer what broke."""

    type: Literal["error"] = "error"
    code: str
    message: str


ServerMessage = HelloOut | Stt | Llm | Tts | Mcp | System | Alert | Error
_SERVER_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        HelloOut | Stt | Llm | Tts | Mcp | System | Alert | Error, Field(discriminator="type")
    ]
)


def _load_object(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_MESSAGE_BYTES:  # checked again per frame by the connection
        raise ProtocolError(f"message of {len(text)} bytes is over {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
    except RecursionError as exc:  # nested thousands deep
        raise ProtocolError("malformed JSON: nested too deeply") from exc
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ProtocolError(f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(data).__name__}")
    if not isinstance(data.get("type"), str):
        raise ProtocolError("a message needs a string 'type' field")
    return data


def _validate(adapter: TypeAdapter[Any], data: dict[str, Any]) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise ProtocolError(f"invalid {data['type']!r} message: {where}: {first['msg']}") from exc


def parse_device_message(text: str | bytes) -> HelloIn | Listen | Abort | Mcp:
    """One JSON text frame from a device; raises ProtocolError on anything malformed or unknown."""
    data = _load_object(text)
    if data["type"] not in DEVICE_TYPES:
        raise ProtocolError(
            f"unknown message type {data['type']!r}; expected one of {list(DEVICE_TYPES)}"
        )
    result: HelloIn | Listen | Abort | Mcp = _validate(_DEVICE_ADAPTER, data)
    return result


def parse_server_message(text: str | bytes) -> ServerMessage:
    """One JSON text frame from the server (used by the simulator)."""
    data = _load_object(text)
    result: ServerMessage = _validate(_SERVER_ADAPTER, data)
    return result


# -- binary framing ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BinaryFrame:
    payload: bytes
    frame_type: int = FRAME_TYPE_OPUS
    timestamp_ms: int = 0


def pack_frame(
    version: int, payload: bytes, *, frame_type: int = FRAME_TYPE_OPUS, timestamp_ms: int = 0
) -> bytes:
    """Wrap ``payload`` for protocol ``version``."""
    if version == 1:
        return payload
    if version == 2:
        return _V2_HEADER.pack(2, frame_type, 0, timestamp_ms & 0xFFFFFFFF, len(payload)) + payload
    if version == 3:
        if len(payload) > 0xFFFF:
            raise ProtocolError(f"payload of {len(payload)} bytes does not fit a v3 frame")
        return _V3_HEADER.pack(frame_type, 0, len(payload)) + payload
    raise ProtocolError(f"unsupported protocol version {version}")


def unpack_frame(version: int, data: bytes) -> BinaryFrame:
    """Parse one binary WebSocket message of protocol ``version``; checks the stated size."""
    if version == 1:
        return BinaryFrame(payload=bytes(data))
    if version == 2:
        if len(data) < _V2_HEADER.size:
            raise ProtocolError(f"v2 frame of {len(data)} bytes is shorter than its 16-byte header")
        _, frame_type, _, timestamp_ms, size = _V2_HEADER.unpack_from(data)
        header = _V2_HEADER.size
    elif version == 3:
        if len(data) < _V3_HEADER.size:
            raise ProtocolError(f"v3 frame of {len(data)} bytes is shorter than its 4-byte header")
        frame_type, _, size = _V3_HEADER.unpack_from(data)
        timestamp_ms, header = 0, _V3_HEADER.size
    else:
        raise ProtocolError(f"unsupported protocol version {version}")
    if len(data) - header != size:
        raise ProtocolError(
            f"v{version} frame states {size} payload bytes but carries {len(data) - header}"
        )
    return BinaryFrame(
        payload=bytes(data[header:]), frame_type=frame_type, timestamp_ms=timestamp_ms
    )
