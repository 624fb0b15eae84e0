"""The cheap path's rules (devices/intents.py, devices/device_controls.py) on declared tools:
what a tool list offers, which calls a sentence asks for, and no call without a device word."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from devices.device_controls import Controls, Kind, control_of
from devices.intents import chinese_number, plan, run_steps
from devices.mcp import McpError, McpTool

_INT = {"type": "integer", "minimum": 0, "maximum": 100}
TOOLS = [
    McpTool("self.get_device_status", "Provides the real-time information of the device", {}),
    McpTool("self.audio_speaker.set_volume", "Set the volume", {"properties": {"volume": _INT}}),
    McpTool("self.screen.set_brightness", "", {"properties": {"brightness": _INT}}),
    McpTool(
        "self.screen.set_theme",
        "Set the theme of the screen. The theme can be `light` or `dark`.",
        {"properties": {"theme": {"type": "string"}}, "required": ["theme"]},
    ),
    McpTool("self.lamp.get_state", "Get the power state of the lamp", {}),
    McpTool("self.lamp.turn_on", "Turn on the lamp", {}),
    McpTool("self.lamp.turn_off", "Turn off the lamp", {}),
    McpTool("self.relay.set_power", "", {"properties": {"on": {"type": "boolean"}}}),
    McpTool("self.camera.take_photo", "Take a photo", {"properties": {"question": {}}}),
]
STATUS = {"audio_speaker": {"volume": 70}, "screen": {"brightness": 80, "theme": "light"}}


def _calls(text: str, tools: list[McpTool] = TOOLS) -> list[tuple[str, dict[str, Any]]]:
    async def call(name: str, arguments: dict[str, Any]) -> str:
        return json.dumps(STATUS) if name == "self.get_device_status" else "true"

    outcome = asyncio.run(run_steps(plan(text, Controls.of(tools)), call))
    return [(name, arguments) for name, arguments, _ in outcome.calls]


def test_controls_come_from_names_and_schemas() -> None:
    kinds = {t.name: (c.kind, c.thing.key) if (c := control_of(t)) else None for t in TOOLS}
    assert kinds == {
        "self.get_device_status": (Kind.READ, "volume"),
        "self.audio_speaker.set_volume": (Kind.LEVEL, "volume"),
        "self.screen.set_brightness": (Kind.LEVEL, "brightness"),
        "self.screen.set_theme": (Kind.CHOICE, "theme"),
        "self.lamp.get_state": (Kind.READ, "lamp"),
        "self.lamp.turn_on": (Kind.SWITCH, "lamp"),
        "self.lamp.turn_off": (Kind.SWITCH, "lamp"),
        "self.relay.set_power": (Kind.SWITCH, "switch"),
        "self.camera.take_photo": None,  # the LLM's
    }


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ("开灯", [("self.lamp.turn_on", {})]),
        ("请帮我把灯关掉吧", [("self.lamp.turn_off", {})]),
        ("把开关打开", [("self.relay.set_power", {"on": True})]),
        ("插座关一下", [("self.relay.set_power", {"on": False})]),
        ("音量调到六十五", [("self.audio_speaker.set_volume", {"volume": 65})]),
        ("音量调到一百二", [("self.audio_speaker.set_volume", {"volume": 100})]),  # clamped
        (
            "把声音关小一点",
            [("self.get_device_status", {}), ("self.audio_speaker.set_volume", {"volume": 60})],
        ),
        ("现在是什么主题", [("self.get_device_status", {})]),
        (
            "换成深色主题，然后开灯",
            [("self.screen.set_theme", {"theme": "dark"}), ("self.lamp.turn_on", {})],
        ),
    ],
)
def test_commands(text: str, calls: list[tuple[str, dict[str, Any]]]) -> None:
    assert _calls(text) == calls


@pytest.mark.parametrize(
    "text",
    [
        "开心一点",
        "灯太亮了",
        "把亮度调成一半",
        "关于长城你知道什么",
        "灯笼是怎么做的",
        "白天有什么安排",
        "拍张照片",
        "调查一下",
        "给我讲个故事",
    ],
)
def test_no_call_without_a_device_word(text: str) -> None:
    assert _calls(text) == []


def test_a_thing_the_device_lacks_is_left_to_the_llm() -> None:
    lamp_only = [t for t in TOOLS if "lamp" in t.name]
    assert _calls("把音量调到60", lamp_only) == [] and _calls("开灯", lamp_only)


def test_a_state_question_never_switches() -> None:
    """Fresh phrasing after the bench: "风扇开着没" on a fan without a read tool turned it on."""
    fan = [McpTool("self.fan.set_power", "", {"properties": {"power": {"type": "boolean"}}})]
    assert _calls("风扇开着没", fan) == [] and _calls("把风扇打开", fan)


def test_a_relative_change_needs_a_read_of_the_current_value() -> None:
    no_status = [t for t in TOOLS if t.name != "self.get_device_status"]
    assert _calls("大声一点", no_status) == []  # the LLM's, rather than a guess


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("60", 60),
        ("六十", 60),
        ("六十五", 65),
        ("十五", 15),
        ("一百", 100),
        ("百分之三十", 30),
        ("大一点", None),
        ("调一下", None),
        ("两", 2),
    ],
)
def test_chinese_numbers(text: str, number: int | None) -> None:
    assert chinese_number(text) == number


def test_a_failed_call_is_said_and_not_confirmed() -> None:
    async def call(name: str, arguments: dict[str, Any]) -> str:
        if name == "self.lamp.turn_on":
            raise McpError("tools/call: no answer within 5 s", retryable=True)
        return "true"

    steps = plan("开灯，音量调到三十", Controls.of(TOOLS))
    outcome = asyncio.run(run_steps(steps, call))
    assert outcome.reply == "好的，已经把音量调到30了。抱歉，灯没有设置成功，设备没有响应。"
    assert [c[0] for c in outcome.calls] == ["self.audio_speaker.set_volume"]


@pytest.mark.parametrize(
    ("text", "claims"),
    [
        ("好的，灯已开启。", True),
        ("好的，已经办好了。", True),
        ("我正在调到三十。", True),  # the 0.5B model's answer to "声音调到三十", no call made
        ("好的。", True),
        ("灯笼起源于汉代。", False),
        ("好的，我们聊聊长城吧。", False),
        ("抱歉，我做不到。", False),
    ],
)
def test_what_counts_as_a_confirmation(text: str, claims: bool) -> None:
    from devices.tool_loop import claims_success

    assert claims_success(text) is claims
