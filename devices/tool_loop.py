"""The device's MCP tools offered to the LLM as functions, the results fed back into the turn.

One round: the LLM sees the conversation and the tools; its text is spoken as it streams, its
tool calls are run on the device (``tools/call``) and come back as ``tool`` messages; the next
round answers with that. A round that only *read* (``get_*`` tools: the volume is unknown
before "louder") may call tools again; after a call that changed something, the last round is
offered no tools, so the model says what happened instead of calling again (a 0.5B model
repeats its call when it can). At most ``max_rounds`` rounds with tools.

The loop knows neither the scheduler nor the socket: ``chat`` streams one LLM round, ``call``
runs one tool (and never raises: failures come back as text for the model). The turn
(devices/turn.py) and the accuracy bench (bench/tools_bench.py) drive the same code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from core.models.llm import ChatEvent, ChatMessage, ToolCall, ToolSpec
from core.models.tool_text import ToolTextParser
from devices.mcp import McpTool

MAX_ROUNDS = 3
DESCRIPTION_CHARS = 240  # a board's long tool descriptions cost prompt tokens on every turn
# appended to the system prompt when tools are offered: the model must not call tools for
# small talk (measured: without it Qwen2.5-0.5B set the volume on "你好")
TOOLS_PROMPT = (
    "你可以调用工具控制这台设备。只有当用户明确要求操作设备（音量、亮度、屏幕、灯等）"
    "或询问设备状态时才调用工具；其他问题直接用中文回答，不要调用工具。"
)
TOOL_TEMPERATURE = 0.0  # greedy: a 0.5B model's calls at 0.7 change from run to run
DONE_REPLY = "好的，已经办好了。"  # the device changed, but the model said nothing about it

ChatRound = Callable[[list[ChatMessage], Sequence[ToolSpec]], AsyncIterator[ChatEvent]]
RunTool = Callable[[ToolCall], Awaitable[str]]


def tool_specs(tools: Sequence[McpTool]) -> list[ToolSpec]:
    """The device's MCP tools as LLM functions (user-only tools are the device's own)."""
    specs = []
    for tool in tools:
        schema = dict(tool.input_schema) or {"type": "object", "properties": {}}
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        specs.append(ToolSpec(tool.name, tool.description[:DESCRIPTION_CHARS], schema))
    return specs


def is_read(name: str) -> bool:
    """``self.get_device_status``, ``self.lamp.get_state``: reads nothing changes."""
    return name.rsplit(".", 1)[-1].startswith("get")


def with_tools_prompt(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    out = list(messages)
    if out and out[0].role == "system":
        out[0] = ChatMessage("system", out[0].content + TOOLS_PROMPT)
    else:
        out.insert(0, ChatMessage("system", TOOLS_PROMPT))
    return out


@dataclass(slots=True)
class ToolRun:
    """What one turn's tool loop did."""

    calls: list[tuple[ToolCall, str]] = field(default_factory=list)  # (call, result text)
    rounds: int = 0
    spoke: bool = False  # the model produced text
    ignored: int = 0  # calls written in a round offered no tools (not run)


async def tool_rounds(
    messages: Sequence[ChatMessage],
    tools: Sequence[ToolSpec],
    *,
    chat: ChatRound,
    call: RunTool,
    run: ToolRun,
    max_rounds: int = MAX_ROUNDS,
) -> AsyncIterator[str]:
    """Text to speak, round after round, running the model's tool calls in between."""
    history = with_tools_prompt(messages)
    offered: Sequence[ToolSpec] = tools
    for _ in range(max_rounds + 1):
        run.rounds += 1
        text: list[str] = []
        calls: list[ToolCall] = []
        # without tools the model may still write a call as text: parsed out, never spoken
        unoffered = None if offered else ToolTextParser(t.name for t in tools)
        async for event in _events(chat(history, offered), unoffered):
            if isinstance(event, ToolCall):
                calls.append(event)
            elif event:
                text.append(event)
                run.spoke = run.spoke or bool(event.strip())
                yield event
        if not calls:
            break
        if not offered:  # written, not offered: nothing runs
            run.ignored += len(calls)
            break
        history.append(ChatMessage("assistant", "".join(text), tool_calls=tuple(calls)))
        for c in calls:
            result = await call(c)
            run.calls.append((c, result))
            history.append(ChatMessage("tool", result, tool_call_id=c.id))
        changed = any(not is_read(c.name) for c in calls)
        if changed or run.rounds >= max_rounds:
            offered = ()  # say what happened; no more calls
    if run.calls and not run.spoke and any(not is_read(c.name) for c, _ in run.calls):
        yield DONE_REPLY


async def _events(
    events: AsyncIterator[ChatEvent], parser: ToolTextParser | None
) -> AsyncIterator[ChatEvent]:
    if parser is None:
        async for event in events:
            yield event
        return
    async for event in events:
        if isinstance(event, str):
            for out in parser.push(event):
                yield out
        if parser.done:
            break
    for out in parser.finish():
        yield out


def error_result(message: str) -> str:
    """A failed call as the model sees it."""
    return json.dumps({"error": message}, ensure_ascii=False)
