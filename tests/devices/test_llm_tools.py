"""The device's MCP tools offered to the LLM as functions (issue 13 item 4), through the firmware
emulator over loopback: the call runs on the device, its result goes back into the same turn,
the model's reply is spoken. The LLM is a scripted double (tests/devices/fakes.py); the real
model is driven in test_llm_tools_real.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from core.models.llm import ChatMessage, ToolCall
from core.scheduler import Lane
from devices import tool_warmup
from devices.tool_loop import DONE_REPLY, TOOLS_PROMPT
from tests.devices.conftest import HubServer, StartHub
from tests.devices.fakes import FakeInference
from tests.devices.firmware_emulator import FirmwareEmulator

SET_VOLUME = "self.audio_speaker.set_volume"


async def _booted(server: HubServer) -> FirmwareEmulator:
    emu = FirmwareEmulator(server.http)
    server.simulators.append(emu)
    await emu.boot()
    conn = server.hub.connection(emu.device_id)
    assert conn is not None and conn.mcp is not None
    await asyncio.wait_for(conn.mcp.ready.wait(), timeout=5)
    return emu


def _call(name: str, arguments: str = "{}", cid: str = "call_0") -> ToolCall:
    return ToolCall(cid, name, arguments)


async def test_llm_tool_call_runs_on_the_device_and_the_result_goes_back(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.tool_script = [[_call(SET_VOLUME, '{"volume": 60}')]]
    fake.reply = "好的，音量调到六十了。"  # round two (its calls would not run): the answer
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    spoken = await emu.typed_turn("把音量调到60")
    assert emu.tool_calls == [(SET_VOLUME, {"volume": 60})] and emu.volume == 60
    assert "".join(spoken) == "好的，音量调到六十了。"
    # both rounds see all 7 tools (the same prompt prefix: llama.cpp reuses its cache)
    assert fake.tool_offers == [[t.name for t in emu.tools]] * 2
    first, second = fake.chat_prompts
    assert first[0].role == "system" and first[0].content.endswith(TOOLS_PROMPT)
    assistant, tool = second[-2:]
    assert assistant == ChatMessage(
        "assistant", "", tool_calls=(fake_call := assistant.tool_calls[0],)
    )
    assert fake_call.name == SET_VOLUME
    assert tool.role == "tool" and tool.content == "true" and tool.tool_call_id == fake_call.id
    assert emu.messages("stt")[-1]["text"] == "把音量调到60"


async def test_a_tool_the_keywords_do_not_know_goes_through_the_llm(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.tool_script = [["好的，", _call("self.lamp.turn_on")]]
    fake.reply = "灯已经打开了。"
    server = await start_hub(fake)  # keywords first: "让灯亮起来" is none of theirs
    emu = await _booted(server)
    spoken = await emu.typed_turn("让灯亮起来")
    assert emu.lamp is True and emu.tool_calls == [("self.lamp.turn_on", {})]
    assert "".join(spoken) == "好的，灯已经打开了。"  # text before the call is spoken too


async def test_a_read_lets_the_model_call_again_then_it_answers(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.tool_script = [
        [_call("self.get_device_status")],
        [_call(SET_VOLUME, '{"volume": 80}', "call_1")],
    ]
    fake.reply = "调大了。"
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    spoken = await emu.typed_turn("声音大一点")
    assert [c[0] for c in emu.tool_calls] == ["self.get_device_status", SET_VOLUME]
    assert emu.volume == 80 and "".join(spoken) == "调大了。"
    assert len(fake.tool_offers) == 3  # read → may call again; set → the answer round
    status = fake.chat_prompts[1][-1]
    assert status.role == "tool" and '"volume": 70' in status.content


async def test_a_tool_that_does_not_answer_is_reported_to_the_model(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.tool_script = [[_call(SET_VOLUME, '{"volume": 60}')]]
    fake.reply = "抱歉，设备没有反应。"
    server = await start_hub(fake, keyword_intents=False, mcp_timeout_s=0.3)
    emu = await _booted(server)
    emu.tools[1].call = lambda args: asyncio.sleep(3600)
    loop = asyncio.get_running_loop()
    started = loop.time()
    spoken = await emu.typed_turn("把音量调到60")
    assert loop.time() - started < 3 and "".join(spoken) == "抱歉，设备没有反应。"
    result = fake.chat_prompts[1][-1]
    assert result.role == "tool" and "error" in result.content and "0.3 s" in result.content


@pytest.mark.parametrize("as_text", [False, True])
async def test_a_call_repeated_in_the_answer_round_is_not_run_nor_spoken(
    start_hub: StartHub, fake: FakeInference, as_text: bool
) -> None:
    call = _call(SET_VOLUME, '{"volume": 60}')
    # a 0.5B model repeats its call instead of answering; a backend that does not parse calls
    # hands it over as text
    text = '{"name": "self.audio_speaker.set_volume", "arguments": {"volume": 60}}'
    fake.tool_script = [[call], [text] if as_text else [call]]
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    spoken = await emu.typed_turn("把音量调到60")
    assert emu.tool_calls == [(SET_VOLUME, {"volume": 60})]  # once, not again
    assert "".join(spoken) == DONE_REPLY


async def test_no_tools_for_the_llm_when_switched_off(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.reply = "我是小优。"
    server = await start_hub(fake, llm_tools=False)
    emu = await _booted(server)
    spoken = await emu.typed_turn("你是谁")
    assert fake.tool_offers == [] and "".join(spoken) == "我是小优。"
    assert not fake.chat_prompts[0][0].content.endswith(TOOLS_PROMPT)


async def test_a_speculative_turn_calls_no_tool_before_the_end_of_speech(
    fake: FakeInference,
) -> None:
    """A held turn (started at a pause) runs the LLM, but its call waits for the release; a
    dropped speculation never touches the device."""
    from devices.mcp import McpClient
    from devices.memory import ConversationMemory
    from devices.turn import Turn, TurnConfig

    sent: list[dict[str, Any]] = []

    async def send(payload: dict[str, Any]) -> bool:
        sent.append(payload)
        return True

    client = McpClient(send, owner="t")
    from devices.mcp import McpTool

    client.tools = [McpTool(SET_VOLUME, "", {"type": "object", "properties": {}})]

    class _Outbox:
        session_id = "s"

        async def send_message(self, message: object, *, gate: object = None) -> bool:
            return True

        async def send_audio(self, packet: bytes, *, gate: object = None) -> bool:
            return True

    fake.tool_script = [[_call(SET_VOLUME, '{"volume": 60}')]]
    turn = Turn(
        1,
        inference=fake,
        outbox=_Outbox(),
        gate=lambda: True,
        memory=ConversationMemory(),
        config=TurnConfig(owner="device:t", keyword_intents=False),
        on_speaking=lambda: None,
        held=True,
        tools=client,
    )
    task = asyncio.get_running_loop().create_task(turn.run(text="把音量调到60"))
    for _ in range(100):
        if fake.finished.get("llm"):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert fake.finished.get("llm") == 1 and sent == []  # the call waits for the release
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sent == []


async def test_a_device_command_stays_out_of_the_conversation_memory(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """A remembered command and its confirmation, without the call, teach the model to
    confirm the next command without calling anything."""
    fake.tool_script = [[_call("self.lamp.turn_on")], ["灯开了。"], ["我是小优。"]]
    server = await start_hub(fake)
    emu = await _booted(server)
    await emu.typed_turn("把音量调到60")  # the keyword path
    await emu.typed_turn("开灯")  # the LLM path
    await emu.typed_turn("你是谁")
    last = fake.chat_prompts[-1]
    assert [m.content for m in last if m.role in ("user", "assistant")] == ["你是谁"]


async def test_a_question_naming_nothing_of_the_device_is_answered_without_the_tools(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Trial with the firmware emulator: every question the keywords did not take went to the
    LLM with the tools' prompt (~500 tokens), 7–9 s before the first audio; where no changing
    call could run and no state is asked, the plain chat answers (cached, guarded)."""
    fake.reply = "不客气。"
    server = await start_hub(fake)
    emu = await _booted(server)
    for text in ("谢谢你", "帮我设置一个十分钟的计时器", "What is the capital of Australia?"):
        spoken = await emu.typed_turn(text)
        assert "".join(spoken) == "不客气。"
    assert fake.tool_offers == [] and emu.tool_calls == []
    assert not any(p[0].content.endswith(TOOLS_PROMPT) for p in fake.chat_prompts)


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline_s = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline_s, "condition not reached"
        await asyncio.sleep(0.02)


async def test_the_tools_prompt_is_evaluated_in_the_background_once_they_are_listed(
    start_hub: StartHub, fake: FakeInference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trial: the first command the keywords missed waited 7 s for the tools' 609-token prompt;
    now one BACKGROUND token evaluates it once the device is idle (kept in the prompt cache)."""
    monkeypatch.setattr(tool_warmup, "IDLE_BEFORE_S", 0.1)
    server = await start_hub(fake, warm_tool_prompt=True)
    emu = await _booted(server)
    await _until(lambda: bool(fake.tool_offers))
    assert fake.chat_lanes == [Lane.BACKGROUND] and len(fake.tool_offers[0]) == len(emu.tools)
    system, user = fake.chat_prompts[0]
    assert system.content.endswith(TOOLS_PROMPT) and user.content == "你好"
    assert emu.tool_calls == [] and emu.messages("tts") == []  # nothing ran, nothing was said
    await _until(lambda: fake.finished.get("llm", 0) == 1)
    fake.tool_script = [["好的，", _call("self.lamp.turn_on")]]
    fake.reply = "灯已经打开了。"
    spoken = await emu.typed_turn("让灯亮起来")  # the turn after it: the same prompt shape
    assert emu.lamp is True and "".join(spoken) == "好的，灯已经打开了。"
    assert fake.chat_prompts[1][0] == system
    assert fake.chat_lanes[1:] == [Lane.REALTIME, Lane.REALTIME]


async def test_the_warm_up_gives_way_to_the_device_and_comes_back_when_it_is_idle(
    start_hub: StartHub, fake: FakeInference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench/voice_zh_bench.py --device firmware: the warm-up beside the first utterance's ASR
    slowed the first turn by 0.5 s on 2 cores."""
    monkeypatch.setattr(tool_warmup, "IDLE_BEFORE_S", 0.3)
    fake.reply = "我 是 小 优 。"
    fake.token_s = 0.2  # a warm-up that lasts
    server = await start_hub(fake, warm_tool_prompt=True)
    emu = await _booted(server)
    await emu.listen("detect", None, text="你是谁")  # at once: no warm-up before this turn
    await _until(lambda: len(fake.chat_prompts) == 1)
    assert fake.chat_lanes == [Lane.REALTIME] and fake.tool_offers == []
    await _until(lambda: len(fake.tool_offers) == 1, timeout_s=10)  # idle again: it starts
    await emu.listen("detect", None, text="你在吗")  # a turn while it runs: it gives way
    await _until(lambda: fake.cancelled.get("llm", 0) == 1)
    await _until(lambda: len(fake.tool_offers) == 2, timeout_s=10)  # and comes back
    assert fake.chat_lanes == [Lane.REALTIME, Lane.BACKGROUND, Lane.REALTIME, Lane.BACKGROUND]


async def test_no_tools_warm_up_when_switched_off(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake, warm_tool_prompt=True, llm_tools=False)
    await _booted(server)
    await asyncio.sleep(0.2)
    assert fake.chat_prompts == []


async def test_a_changing_call_on_another_thing_is_not_run_and_the_question_is_answered(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Qwen2.5-0.5B set the volume on "谢谢你" (bench/tools_bench.py): a changing call for a
    thing the text does not name is dropped and the model answers without tools."""
    fake.tool_script = [[_call(SET_VOLUME, '{"volume": 75}')]]
    fake.reply = "灯是开着的。"  # the plain chat (no tools) that answers instead
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    spoken = await emu.typed_turn("灯还好吗")
    assert emu.tool_calls == [] and emu.volume == 70 and "".join(spoken) == "灯是开着的。"
    assert len(fake.tool_offers) == 1 and len(fake.chat_prompts) == 2


async def test_arguments_the_tool_does_not_declare_are_dropped(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.tool_script = [
        [_call("self.screen.set_brightness", '{"brightness": 30, "theme": "light"}')],
        ["好了。"],
    ]
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    await emu.typed_turn("亮度调到30")
    assert emu.tool_calls == [("self.screen.set_brightness", {"brightness": 30})]


async def test_reads_and_no_answer_still_get_a_spoken_answer(
    start_hub: StartHub, fake: FakeInference
) -> None:
    """Trial: "谢谢你" (then offered the tools) → the model read the status and the lamp three
    times and said nothing; the device heard nothing until its idle goodbye."""
    fake.tool_script = [
        [_call("self.get_device_status")],
        [_call("self.lamp.get_state", cid="call_1")],
        [_call("self.lamp.get_state", cid="call_2")],
        [_call("self.lamp.get_state", cid="call_3")],  # the last round: not run
    ]
    fake.reply = "灯是开着的。"  # the plain chat without tools
    server = await start_hub(fake, keyword_intents=False)
    emu = await _booted(server)
    spoken = await emu.typed_turn("灯还好吗")
    assert "".join(spoken) == "灯是开着的。" and emu.volume == 70


def test_no_tools_warm_up_for_a_remote_llm(fake: FakeInference) -> None:
    """An OpenAI-style API keeps no prompt of ours: a warm-up per device would only cost its
    tokens (bot/app.py passes keeps_prompts for llamacpp only)."""
    from core.settings import DeviceSettings
    from devices.hub import DeviceHub

    assert DeviceHub(DeviceSettings(), fake).pipeline_config("a").warm_tool_prompt is True
    remote = DeviceHub(DeviceSettings(), fake, keeps_prompts=False)
    assert remote.pipeline_config("a").warm_tool_prompt is False
