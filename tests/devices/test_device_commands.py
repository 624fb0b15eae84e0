"""Common device commands without the LLM, from the tools the device declared (issue 13 item 4,
third session), and no spoken success when nothing ran. Through the firmware emulator over
loopback; the LLM is a scripted double that must not be asked (or, for the LLM path, says
what the 0.5B model said)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from core.models.llm import ToolCall
from devices.tool_loop import FAILED_REPLY, NOT_DONE_REPLY
from tests.devices.conftest import HubServer, StartHub
from tests.devices.fakes import FakeInference
from tests.devices.firmware_emulator import EmuTool, FirmwareEmulator


async def _booted(server: HubServer, **kwargs: Any) -> FirmwareEmulator:
    emu = FirmwareEmulator(server.http, **kwargs)
    server.simulators.append(emu)
    await emu.boot()
    conn = server.hub.connection(emu.device_id)
    assert conn is not None and conn.mcp is not None
    await asyncio.wait_for(conn.mcp.ready.wait(), timeout=5)
    return emu


@pytest.mark.parametrize(
    ("text", "calls", "reply"),
    [
        ("开灯", [("self.lamp.turn_on", {})], "好的，已经把灯打开了。"),
        ("把台灯打开", [("self.lamp.turn_on", {})], "好的，已经把灯打开了。"),
        ("打开夜间模式", [("self.screen.set_theme", {"theme": "dark"})], "好的，已换成深色主题。"),
        (
            "音量调到三十，亮度调到五十",
            [
                ("self.audio_speaker.set_volume", {"volume": 30}),
                ("self.screen.set_brightness", {"brightness": 50}),
            ],
            "好的，已经把音量调到30了，已经把亮度调到50了。",
        ),
        ("现在音量是多少", [("self.get_device_status", {})], "现在音量是70。"),
        ("灯现在是开着的吗", [("self.lamp.get_state", {})], "灯现在是关着的。"),
        (
            "太吵了，小声一点",
            [("self.get_device_status", {}), ("self.audio_speaker.set_volume", {"volume": 60})],
            "好的，已经把音量调到60了。",
        ),
    ],
)
async def test_common_commands_run_on_the_device_without_the_llm(
    start_hub: StartHub,
    fake: FakeInference,
    text: str,
    calls: list[tuple[str, dict[str, Any]]],
    reply: str,
) -> None:
    """Seen with the 0.5B model: "开灯"/"把台灯打开" no call, "现在音量是多少" no read, the second
    half of "音量调到三十，亮度调到五十" lost, "打开夜间模式" → brightness 50."""
    server = await start_hub(fake)
    emu = await _booted(server)
    assert "".join(await emu.typed_turn(text)) == reply
    assert emu.tool_calls == calls and fake.started.get("llm", 0) == 0


async def test_a_board_s_own_switch_is_driven_from_its_declared_schema(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """A GPIO fan with one boolean argument: nothing about fans is written in the rules but its
    name; "打开风扇" sets ``power`` true, "把风扇关了" false."""
    fan: list[bool] = []

    def set_power(args: dict[str, Any]) -> bool:
        fan.append(bool(args["power"]))
        return True

    emu_tools = [
        EmuTool(
            "self.fan.set_power",
            "Turn the fan on or off",
            {"power": {"type": "boolean"}},
            call=set_power,
        )
    ]
    server = await start_hub(fake)
    emu = await _booted(server, tools=emu_tools)
    assert "".join(await emu.typed_turn("打开风扇")) == "好的，已经把风扇打开了。"
    assert "".join(await emu.typed_turn("把风扇关了")) == "好的，已经把风扇关掉了。"
    assert fan == [True, False] and fake.started.get("llm", 0) == 0


def _call(name: str, arguments: str = "{}") -> ToolCall:
    return ToolCall("call_0", name, arguments)


async def test_small_talk_with_a_lone_kai_calls_nothing(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Held-out baseline: the model set the volume to 50 on "开心一点嘛" (开 passed as a
    device word)."""
    fake.tool_script = [[_call("self.audio_speaker.set_volume", '{"volume": 50}')]]
    fake.reply = "好呀，我们一起开心。"
    server = await start_hub(fake)
    emu = await _booted(server)
    assert "".join(await emu.typed_turn("开心一点嘛")) == "好呀，我们一起开心。"
    assert emu.tool_calls == [] and emu.volume == 70


async def test_a_confirmation_without_any_call_is_replaced_by_an_apology(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """The device has no air conditioner; the model says it switched it on anyway."""
    fake.tool_script = [["好的，空调已", "经打开了。", "还有别的吗？"]]
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    assert "".join(await emu.typed_turn("帮我打开空调")) == NOT_DONE_REPLY
    assert emu.tool_calls == []


async def test_a_failed_call_is_not_reported_as_done(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """The model calls a tool the device does not have and then says nothing: the device
    answered an error, so "好的，已经办好了。" would be a lie."""
    fake.tool_script = [[_call("self.lamp.switch_on")], []]
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    assert "".join(await emu.typed_turn("开灯")) == FAILED_REPLY
    assert emu.lamp is False


async def test_plain_answers_about_device_things_still_stream(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Only confirmations are held back: an answer that names the lamp is spoken as it is."""
    fake.tool_script = [["灯笼起源于", "汉代。"]]
    server = await start_hub(fake)
    emu = await _booted(server)
    assert "".join(await emu.typed_turn("台灯是谁发明的")) == "灯笼起源于汉代。"
    assert json.dumps(emu.tool_calls) == "[]"


async def test_a_call_on_another_part_of_the_device_is_not_run(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Trial: "帮我打开空调" on a device without one → the model set the volume to 50 and the
    device said "好的，已经办好了。". A call on a part the text does not name is not run, and the
    answer without tools may not confirm it either."""
    fake.tool_script = [[_call("self.audio_speaker.set_volume", '{"volume": 50}')]]
    fake.reply = "好的，空调已经打开了。"  # the answer round without tools
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    assert "".join(await emu.typed_turn("帮我打开空调")) == NOT_DONE_REPLY
    assert emu.tool_calls == [] and emu.volume == 70


async def test_the_llm_cannot_change_the_brightness_for_a_theme(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Bench: "打开夜间模式" → the model set the brightness to 50 (a false call)."""
    fake.tool_script = [[_call("self.screen.set_brightness", '{"brightness": 50}')]]
    fake.reply = "好的。"
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    assert "".join(await emu.typed_turn("打开夜间模式")) == NOT_DONE_REPLY
    assert emu.tool_calls == [] and emu.brightness == 80


async def test_a_thing_the_device_does_not_have_is_said_without_the_llm(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake)
    emu = await _booted(server)
    assert "".join(await emu.typed_turn("帮我打开空调")) == "抱歉，这台设备没有空调，我控制不了。"
    assert emu.tool_calls == [] and fake.started.get("llm", 0) == 0
