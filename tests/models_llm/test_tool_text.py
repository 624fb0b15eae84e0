"""Tool calls parsed out of a local model's text (core/models/tool_text.py) and the messages
llama.cpp's template gets for them (core/models/llamacpp/llm.py)."""

from __future__ import annotations

import pytest

from core.models.llamacpp.llm import _wire_messages
from core.models.llm import ChatEvent, ChatMessage, ToolCall, ToolSpec
from core.models.tool_text import ToolTextParser

NAMES = {"self.audio_speaker.set_volume", "self.get_device_status"}
VOLUME = '{"name": "self.audio_speaker.set_volume", "arguments": {"volume": 60}}'


def _parse(pieces: list[str]) -> tuple[list[ChatEvent], bool]:
    parser = ToolTextParser(NAMES)
    out: list[ChatEvent] = []
    for piece in pieces:
        out += parser.push(piece)
        if parser.done:
            break
    return out + parser.finish(), parser.done


def test_a_bare_call_split_across_pieces_is_one_call() -> None:
    out, _ = _parse(
        ['{"name": "self.audio_speaker', '.set_volume", "argu', 'ments": {"volume": 60}}']
    )
    assert out == [ToolCall("call_0", "self.audio_speaker.set_volume", '{"volume": 60}')]


def test_a_repeated_call_is_merged_and_ends_generation() -> None:
    out, done = _parse([VOLUME, "\n", VOLUME, "\n", VOLUME])
    assert done and len(out) == 1


def test_tagged_call_after_text_keeps_the_text() -> None:
    out, _ = _parse(["好的，", "<tool", "_call>\n", VOLUME, "\n</tool_call>"])
    assert out[0] == "好的，" and isinstance(out[1], ToolCall)


@pytest.mark.parametrize(
    "pieces", [["澳大利亚的首都", "是堪培拉。"], ["a<b>c", "d"], ["用 {x} 表示", "未知数"]]
)
def test_plain_text_passes_through(pieces: list[str]) -> None:
    out, _ = _parse(pieces)
    assert "".join(str(e) for e in out) == "".join(pieces)


def test_a_call_of_an_unknown_tool_is_neither_run_nor_spoken() -> None:
    out, _ = _parse(['{"name": "self.audio_speaker", "arguments": {"volume": 70}}'])
    assert out == []


def test_arguments_as_a_json_string_are_accepted() -> None:
    out, _ = _parse(['{"name": "self.get_device_status", "arguments": "{}"}'])
    assert out == [ToolCall("call_0", "self.get_device_status", "{}")]


def test_wire_messages_native_and_in_text() -> None:
    call = ToolCall("c1", "self.audio_speaker.set_volume", '{"volume": 60}')
    messages = [
        ChatMessage("system", "你是小优。"),
        ChatMessage("user", "把音量调到60"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "true", tool_call_id="c1"),
    ]
    tools = [ToolSpec("self.audio_speaker.set_volume", "Set the volume.")]
    native = _wire_messages(messages, native=True, tools=tools)
    assert native[2]["tool_calls"][0]["function"]["arguments"] == {"volume": 60}  # an object
    assert native[3] == {"role": "tool", "content": "true", "tool_call_id": "c1"}
    text = _wire_messages(messages, native=False, tools=tools)
    assert "<tools>" in text[0]["content"] and "set_volume" in text[0]["content"]
    assert "<tool_call>" in text[2]["content"] and text[3]["role"] == "user"
    assert "<tool_response>\ntrue" in text[3]["content"]


def test_a_call_in_a_code_fence_speaks_no_fence() -> None:
    out, _ = _parse(["```", "json\n", VOLUME, "\n```"])
    assert len(out) == 1 and isinstance(out[0], ToolCall)


def test_a_cut_off_call_of_no_offered_tool_is_not_spoken() -> None:
    out, _ = _parse(['{"name": "hello", "arguments": {"message": "你好，有什么我可以帮你的吗？"}'])
    assert out == []


def test_code_that_is_no_call_is_spoken() -> None:
    out, _ = _parse(["看这个：", "```py", "thon\nprint(1)\n```"])
    assert "".join(str(e) for e in out) == "看这个：```python\nprint(1)\n```"
