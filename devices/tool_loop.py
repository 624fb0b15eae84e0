"""The device's MCP tools offered to the LLM as functions, the results fed back into the turn.

One round: the LLM sees the conversation and the tools; its text is spoken as it streams, its
tool calls are run on the device (``tools/call``) and come back as ``tool`` messages; the next
round answers with that. A round that only *read* (``get_*`` tools: the volume is unknown
before "louder") may call tools again; after a call that changed something the next round is
the last: it is still offered the same tools (the prompt stays the same, so llama.cpp reuses
its cached prefix instead of evaluating the whole prompt again), but a
call written there is not run (a 0.5B model repeats its call instead of answering); if the
model said nothing at all, :data:`DONE_REPLY` is spoken. At most ``max_rounds`` rounds.

A text that names nothing of a device (:func:`offers_tools`: no thing, no device verb, no state
question) is answered without the tools: there every changing call would be blocked and a read
is a wrong read, while the tools' prompt (609 tokens with the firmware's seven tools, 114
without) is evaluated for it: 7–9 s before the first audio on 2 cores (firmware emulator,
"帮我设置一个十分钟的计时器", "What is the capital of Australia…"); the plain chat is cached
and guarded like a device without tools.

The loop knows neither the scheduler nor the socket: ``chat`` streams one LLM round, ``call``
runs one tool (and never raises: failures come back as text for the model). The turn
(devices/turn.py) and the accuracy bench (bench/tools_bench.py) drive the same code.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from core.models.llm import ChatEvent, ChatMessage, ToolCall, ToolSpec
from core.models.tool_text import ToolTextParser
from devices.device_controls import THINGS, Thing, control_of
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
# a command the device did not carry out must never be confirmed (the model said "好的，灯已
# 开启。" with no call at all; a failed call is no success either)
NOT_DONE_REPLY = "抱歉，这件事我没能办到，设备没有执行。"
FAILED_REPLY = "抱歉，设备没有执行成功。"
HOLD_CHARS = 40  # a possible false confirmation is held back until a sentence (or this long)

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


# a changing call runs only if the user's text names something a device has or does: the
# 0.5B model set the volume on "谢谢你" and "明天早上七点叫我起床" (bench/tools_bench.py)
# (a lone 开/关/调/设 is no device word: "开心一点嘛" → volume 50 and "调查一下" were seen on the
# held-out set; a verb counts only as a verb of a device: 打开, 调到, 设成, 换成, 拍照)
_DEVICE_WORDS = re.compile(
    r"屏幕|模式|打开|开启|启动|关掉|关闭|关上|调[到成大小高低亮暗节一]|设[成为到]|设置[为成到]|换成|切换|"
    r"拍照|拍张|照片|相机|摄像|"
    r"volume|loud|quiet|mute|bright|dim|screen|theme|mode|light|lamp|turn|set|switch",
    re.IGNORECASE,
)


# a question about the device itself: the status read may answer it
_STATE_WORDS = re.compile(r"状态|设备|\b(status|device)\b", re.IGNORECASE)


def _names_the_device(text: str) -> bool:
    """A thing a device has or a device verb: what any changing call needs in the text."""
    return names_a_thing(text) or bool(_DEVICE_WORDS.search(text))


def offers_tools(user_text: str) -> bool:
    """Whether the LLM is offered the device's tools for ``user_text``: only if a changing call
    could run on it (:func:`plausible` for a tool of no known thing) or it asks about the
    device's state."""
    return _names_the_device(user_text) or bool(_STATE_WORDS.search(user_text))


def plausible(name: str, user_text: str, thing: Thing | None = None) -> bool:
    """Reads always run; a changing call only if ``user_text`` sounds like a device command:
    it names ``thing``, what the tool acts on (trial: "帮我打开空调" on a device without one →
    the volume set to 50; "打开夜间模式" → the brightness), or, for a tool the keywords cannot
    place (a camera), any device thing or verb."""
    if is_read(name):
        return True
    if thing is not None:
        return bool(thing.words.search(user_text))
    return _names_the_device(user_text)


def tool_things(tools: Sequence[ToolSpec]) -> dict[str, Thing]:
    """What each tool acts on, where devices/device_controls.py knows it."""
    out = {}
    for spec in tools:
        control = control_of(McpTool(spec.name, spec.description, dict(spec.parameters)))
        if control is not None:
            out[spec.name] = control.thing
    return out


# a confirmation: what a reply says when it claims the device did something
_CLAIM = re.compile(
    r"已经?(调|设|打开|关闭|开启|关掉|关上|切换|换成|改成|办好|完成|静音|为您|帮您|帮你|将|把)"
    r"|(正在|这就|马上|立刻)(为您|帮您|帮你|给您|给你)?(调|设|打开|关闭|开启|关掉|切换|换)"
    r"|调到了|调好了|搞定|办好了|完成了|开好了|关好了|打开了|关掉了|关闭了|开启了|^好的[。！!，,]?$"
)
_SENTENCE_END = re.compile(r"[。！？!?；;\n]")


def names_a_thing(text: str) -> bool:
    """``text`` names something a device has (音量, 灯, 风扇, ...: devices/device_controls.py)."""
    return any(t.words.search(text) for t in THINGS)


def claims_success(text: str) -> bool:
    """``text`` says the device did something ("好的，灯已开启。")."""
    return bool(_CLAIM.search(text.strip()))


def succeeded(result: str) -> bool:
    """A call's result text is not a failure (:func:`error_result`)."""
    try:
        answer = json.loads(result)
    except ValueError:
        return True
    return not (isinstance(answer, dict) and "error" in answer)


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
    ignored: int = 0  # calls written in the answer round (not run)
    blocked: int = 0  # changing calls on a text that names nothing of a device (not run)
    refused: int = 0  # false confirmations replaced by NOT_DONE_REPLY

    def changed(self) -> bool:
        """A changing call succeeded."""
        return any(not is_read(c.name) and succeeded(r) for c, r in self.calls)


async def tool_rounds(
    messages: Sequence[ChatMessage],
    tools: Sequence[ToolSpec],
    *,
    chat: ChatRound,
    call: RunTool,
    run: ToolRun,
    max_rounds: int = MAX_ROUNDS,
    answer: bool = True,
) -> AsyncIterator[str]:
    """Text to speak, round after round, running the model's tool calls in between.
    ``answer=False`` skips the answer round after a changing call (benches of the calls)."""
    user_text = next((m.content for m in reversed(messages) if m.role == "user"), "")
    names = [t.name for t in tools]
    if not offers_tools(user_text):  # small talk, a question: the plain chat (module doc)
        run.rounds += 1
        async for piece in _plain_answer(chat, list(messages), names, run, hold=False):
            yield piece
        return
    history = with_tools_prompt(messages)
    command = names_a_thing(user_text)
    things = tool_things(tools)
    final = False  # this round's calls are not run
    for _ in range(max_rounds + 1):
        if final and not answer:
            break
        run.rounds += 1
        text: list[str] = []
        calls: list[ToolCall] = []
        # a device command with nothing done yet: the text is held until its first sentence is
        # known not to confirm what did not happen (TTS waits for a whole sentence anyway)
        held: list[str] | None = [] if command and not run.changed() else None
        # a backend that does not parse calls itself: written calls are parsed out here, never
        # spoken (a remote model answering with text only passes through unchanged)
        async for event in _events(chat(history, tools), ToolTextParser(names)):
            if isinstance(event, ToolCall):
                calls.append(event)
                if final:
                    break  # the model repeats its call instead of answering: stop it
                if held:  # text before a real call ("好的，"): the call decides, not the text
                    for piece in _release(held, text, run):
                        yield piece
                held = None
            elif event and held is not None:
                held.append(event)
                sofar = "".join(held)
                if _SENTENCE_END.search(sofar) or len(sofar) >= HOLD_CHARS:
                    if claims_success(sofar):
                        break
                    for piece in _release(held, text, run):
                        yield piece
                    held = None
            elif event:
                text.append(event)
                run.spoke = run.spoke or bool(event.strip())
                yield event
        if held and not calls:
            if claims_success("".join(held)):
                run.refused += 1
                run.spoke = True
                yield NOT_DONE_REPLY
                return
            for piece in _release(held, text, run):
                yield piece
        if final:
            run.ignored += len(calls)
            break
        blocked = [c for c in calls if not plausible(c.name, user_text, things.get(c.name))]
        run.blocked += len(blocked)
        calls = [c for c in calls if c not in blocked]
        if not calls:
            break
        history.append(ChatMessage("assistant", "".join(text), tool_calls=tuple(calls)))
        for c in calls:
            result = await call(c)
            run.calls.append((c, result))
            history.append(ChatMessage("tool", result, tool_call_id=c.id))
        changed = any(not is_read(c.name) for c in calls)
        final = changed or run.rounds >= max_rounds  # say what happened; no more calls
    if run.spoke:
        return
    if run.changed():
        yield DONE_REPLY
        return
    if any(not is_read(c.name) for c, _ in run.calls):
        yield FAILED_REPLY  # every changing call failed (an unknown tool, no answer)
        return
    # nothing said and nothing changed (a call of no tool, a blocked call, only reads, an empty
    # reply; trial: "谢谢你" → three reads, then silence): answer once more without tools
    async for piece in _plain_answer(chat, history, names, run, hold=command):
        yield piece


def _plain_answer(
    chat: ChatRound, history: list[ChatMessage], names: list[str], run: ToolRun, *, hold: bool
) -> AsyncIterator[str]:
    """The model's answer without tools (a call written as text is parsed out, never spoken),
    through :func:`_unless_claimed`."""
    texts = (
        e async for e in _events(chat(history, ()), ToolTextParser(names)) if isinstance(e, str)
    )
    return _unless_claimed(texts, run, hold=hold)


async def _unless_claimed(
    texts: AsyncIterator[str], run: ToolRun, *, hold: bool
) -> AsyncIterator[str]:
    """``texts``, but with ``hold`` the first sentence waits, and a first sentence that
    confirms a change (none ran) is replaced by :data:`NOT_DONE_REPLY`."""
    held: list[str] | None = [] if hold else None
    async for piece in texts:
        if not piece:
            continue
        if held is None:
            run.spoke = run.spoke or bool(piece.strip())
            yield piece
            continue
        held.append(piece)
        sofar = "".join(held)
        if _SENTENCE_END.search(sofar) or len(sofar) >= HOLD_CHARS:
            break
    if held:
        if claims_success("".join(held)):
            run.refused += 1
            run.spoke = True
            yield NOT_DONE_REPLY
            return
        for piece in _release(held, [], run):
            yield piece
        async for piece in texts:  # the rest, as it comes
            if piece:
                run.spoke = run.spoke or bool(piece.strip())
                yield piece


def _release(held: list[str], text: list[str], run: ToolRun) -> list[str]:
    """Held pieces to speak now."""
    text.extend(held)
    run.spoke = run.spoke or any(p.strip() for p in held)
    pieces = list(held)
    held.clear()
    return pieces


async def _events(
    events: AsyncIterator[ChatEvent], parser: ToolTextParser
) -> AsyncIterator[ChatEvent]:
    """The backend's calls as they come, its text through ``parser`` (calls written as text)."""
    async for event in events:
        if not isinstance(event, str):
            yield event
            continue
        for out in parser.push(event):
            yield out
        if parser.done:
            break
    for out in parser.finish():
        yield out


def error_result(message: str) -> str:
    """A failed call as the model sees it."""
    return json.dumps({"error": message}, ensure_ascii=False)
