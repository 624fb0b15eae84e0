"""What a device can do, read from the tools it declared (``tools/list``), for the cheap path.

The cheap path (devices/intents.py) must work for any board, not only for the firmware's
volume and brightness: a lamp on a GPIO (``self.lamp.turn_on``), a fan switch with a boolean
(``self.fan.set_power {power}``), a theme with choices. Each declared tool becomes at most one
:class:`Control`: what it acts on (a :class:`Thing`: the Chinese words that name it) and how
(set a level, switch on/off, pick a choice, read). Tools it cannot place are left to the LLM.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from devices.mcp import McpTool


@dataclass(frozen=True, slots=True)
class Thing:
    key: str  # "volume": also the key of its value in a status answer
    name_zh: str  # for the spoken reply
    words: re.Pattern[str]  # what names it in a spoken command
    english: tuple[str, ...]  # words of tool names and property names that mean it
    in_status: bool = False  # read from self.get_device_status


def _words(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# order matters: a clause names the first thing of this list it matches ("把屏幕换成深色主题"
# is the theme, not the brightness; "把声音关小" is the volume, not a switch)
THINGS = (
    Thing(
        "theme",
        "主题",
        _words(r"主题|皮肤|(深色|浅色|暗色|亮色|黑色|白色|夜间|日间|白天|黑夜)(的)?(模式|主题)?"),
        ("theme",),
        in_status=True,
    ),
    Thing(
        "volume",
        "音量",
        _words(r"音量|声音|大声|小声|静音|太吵|吵死|听不清|volume|louder|quieter|mute"),
        ("volume", "speaker"),
        in_status=True,
    ),
    Thing(
        "brightness",
        "亮度",
        _words(
            r"亮度|背光|屏幕.{0,6}[亮暗]|[调变太更再]\s*[亮暗]|[亮暗]一?[点些]|最[亮暗]"
            r"|brightness|brighter|dimmer"
        ),
        ("brightness", "backlight"),
        in_status=True,
    ),
    Thing("battery", "电量", _words(r"电量|电池|还有多少电|电还"), ("battery",), in_status=True),
    Thing(
        "lamp",
        "灯",
        _words(r"台灯|电灯|灯(?!笼|泡|塔|谜|光秀|会)|\blamp\b|\blights?\b"),
        ("lamp", "light", "led"),
    ),
    Thing("fan", "风扇", _words(r"风扇|电扇|\bfan\b"), ("fan",)),
    Thing("aircon", "空调", _words(r"空调"), ("aircon", "air_conditioner", "ac")),
    Thing("curtain", "窗帘", _words(r"窗帘"), ("curtain", "blind")),
    Thing("heater", "加热器", _words(r"加热|暖风机|取暖器"), ("heater", "heating")),
    Thing("humidifier", "加湿器", _words(r"加湿器"), ("humidifier",)),
    Thing("pump", "水泵", _words(r"水泵"), ("pump",)),
    Thing("switch", "开关", _words(r"插座|继电器|开关|\bswitch\b"), ("relay", "switch", "plug")),
)
_BY_KEY = {t.key: t for t in THINGS}

# a choice's spoken words by its value; values not listed here must be said as they are
OPTION_WORDS = {
    "dark": _words(r"深色|暗色|黑色|夜间|黑夜|夜晚|暗黑|dark"),
    "light": _words(r"浅色|亮色|白色|日间|白天|明亮|light"),
}


class Kind(enum.Enum):
    LEVEL = "level"  # one number property: set, up, down, max, min
    SWITCH = "switch"  # on and/or off (names ``turn_on``/``turn_off``, or one boolean)
    CHOICE = "choice"  # one string property with known values
    READ = "read"  # a ``get_*`` tool


@dataclass(frozen=True, slots=True)
class Control:
    kind: Kind
    tool: str
    thing: Thing
    argument: str = ""  # the property set (LEVEL, CHOICE, boolean SWITCH)
    minimum: int = 0
    maximum: int = 100
    on: bool | None = None  # a SWITCH tool without arguments: True turns on, False off
    options: tuple[str, ...] = ()  # CHOICE values
    reads: tuple[str, ...] = ()  # READ: the thing keys it answers for


_ON_NAMES = re.compile(r"^(turn_?on|on|open|power_?on|start|enable|switch_?on)$", re.IGNORECASE)
_OFF_NAMES = re.compile(r"^(turn_?off|off|close|power_?off|stop|disable|switch_?off)$", re.I)
_BACKTICKED = re.compile(r"`([A-Za-z_]+)`")


def _thing_of(words: Sequence[str]) -> Thing | None:
    for word in words:
        for thing in THINGS:
            if word.casefold() in thing.english:
                return thing
    return None


def control_of(tool: McpTool) -> Control | None:
    """The control ``tool`` is, if the cheap path knows how to drive it."""
    parts = tool.name.split(".")
    action = parts[-1]
    segments = [w for p in reversed(parts) for w in p.split("_") if w not in ("self", "set")]
    props = tool.properties()
    if action.startswith("get"):
        if "status" in action:  # self.get_device_status: the firmware's status JSON
            keys = tuple(t.key for t in THINGS if t.in_status)
            return Control(Kind.READ, tool.name, _BY_KEY["volume"], reads=keys)
        thing = _thing_of(segments)
        return None if thing is None else Control(Kind.READ, tool.name, thing, reads=(thing.key,))
    thing = _thing_of(segments) or _thing_of(re.findall(r"[A-Za-z]+", tool.description))
    required = [k for k in tool.input_schema.get("required") or [] if k in props]
    if _ON_NAMES.match(action) or _OFF_NAMES.match(action):
        if thing is None or required:
            return None
        return Control(Kind.SWITCH, tool.name, thing, on=bool(_ON_NAMES.match(action)))
    if len(props) != 1:
        return None
    ((argument, schema),) = props.items()
    kind = schema.get("type") if isinstance(schema, dict) else None
    thing = _thing_of([argument]) or thing
    if thing is None:
        return None
    if kind == "boolean":
        return Control(Kind.SWITCH, tool.name, thing, argument=argument)
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", 0), schema.get("maximum", 100)
        return Control(Kind.LEVEL, tool.name, thing, argument, int(low), int(high))
    if kind == "string":
        enum_values = schema.get("enum")
        options = tuple(enum_values) if isinstance(enum_values, list) else ()
        options = options or tuple(_BACKTICKED.findall(tool.description))
        if options:
            return Control(Kind.CHOICE, tool.name, thing, argument, options=options)
    return None


@dataclass(slots=True)
class Controls:
    """A device's controls by thing; built once per tool list."""

    by_thing: dict[str, list[Control]] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Sequence[McpTool]) -> Controls:
        out = cls()
        for tool in tools:
            control = control_of(tool)
            if control is None:
                continue
            for key in control.reads or (control.thing.key,):
                out.by_thing.setdefault(key, []).append(control)
        return out

    def things(self) -> list[Thing]:
        return [t for t in THINGS if t.key in self.by_thing]

    def find(self, thing: Thing, kind: Kind, *, on: bool | None = None) -> Control | None:
        for control in self.by_thing.get(thing.key, []):
            if control.kind is not kind:
                continue
            if kind is Kind.SWITCH and control.on is not None and control.on is not on:
                continue
            if kind is Kind.READ and thing.key not in control.reads:
                continue
            return control
        return None


def status_value(status: Any, thing: Thing) -> Any:
    """``thing``'s value in a status answer: ``{"audio_speaker": {"volume": 70}}`` → 70;
    the battery as its ``level``; a switch's state as the first boolean."""
    if not isinstance(status, dict):
        return None
    if thing.key == "battery":
        battery = status.get("battery")
        return battery.get("level") if isinstance(battery, dict) else None
    if not thing.in_status:
        for key in ("power", "on", "state", "enabled"):
            if isinstance(status.get(key), bool):
                return status[key]
        return next((v for v in status.values() if isinstance(v, bool)), None)
    stack: list[Any] = [status]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if thing.key in item and not isinstance(item[thing.key], dict):
                return item[thing.key]
            stack.extend(item.values())
    return None
