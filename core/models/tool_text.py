"""Tool calls written as text by a local model (Qwen/Hermes style), parsed out of its stream.

Qwen2.5's chat template lists the functions in the system prompt and asks for
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. ``<tool_call>`` is a special token
that llama.cpp's detokenizer drops, so the stream carries the bare JSON object (one per line
when several calls are made); a model without such tokens writes the tags as text. Both are
accepted.

:class:`ToolTextParser` sits on the generated pieces: plain text flows through at once; from the
first ``{`` (or a ``<tool_call>`` tag, or a tail that may be the start of one) the text is held
until the end of the stream or until the calls are complete. Held text that yields no call of an
offered function is passed on as text, unless it parsed as a JSON object (a malformed call is
never spoken). Identical calls are merged (a 0.5B model repeats its call until max_tokens);
:attr:`done` says the model has finished its calls and is only repeating or chatting after them
(the caller may stop generating).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from core.models.llm import ChatEvent, ToolCall, ToolSpec

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
FENCE = "```"
_CALL_SHAPE = re.compile(r'\{\s*"(name|function)"')


def tools_block(tools: Iterable[ToolSpec]) -> str:
    """The Qwen template's tool section, for a model whose template has none."""
    lines = [
        json.dumps(
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters),
                },
            },
            ensure_ascii=False,
        )
        for t in tools
    ]
    return (
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + "\n".join(lines)
        + "\n</tools>\n\nFor each function call, return a json object with function name and"
        " arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def call_text(call: ToolCall) -> str:
    """An earlier call as the model writes it (for templates without tool-call support)."""
    body = f'{{"name": {json.dumps(call.name)}, "arguments": {call.arguments or "{}"}}}'
    return f"{OPEN_TAG}\n{body}\n{CLOSE_TAG}"


class ToolTextParser:
    def __init__(self, names: Iterable[str]) -> None:
        self._names = set(names)
        self._held = ""  # text from the first possible call on
        self._holding = False
        self._calls: list[ToolCall] = []
        self._seen: set[tuple[str, str]] = set()
        self._parsed_any = False  # some JSON object came out of the held text
        self.done = False

    def push(self, piece: str) -> list[ChatEvent]:
        if self.done or not piece:
            return []
        if self._holding:
            self._held += piece
            if not self._calls and _not_a_call(self._held):  # "<b>", "{x}": text after all
                text, self._held, self._holding = self._held, "", False
                return [text]
            self._scan()
            return []
        start = _call_start(piece)
        if start is None:
            return [piece]
        self._holding = True
        self._held = piece[start:]
        self._scan()
        return [piece[:start]] if start else []

    def finish(self) -> list[ChatEvent]:
        """What is left at the end of the stream: the calls, or the held text."""
        if self._holding and not self.done:
            self._scan()
        out: list[ChatEvent] = list(self._calls)
        held = self._held.replace(OPEN_TAG, "").replace(CLOSE_TAG, "")
        held = held.replace(FENCE + "json", "").replace(FENCE, "").strip()
        # a call-shaped text that did not parse (cut off, or of no offered tool) is never spoken
        if not self._calls and not self._parsed_any and held and not _CALL_SHAPE.match(held):
            out.append(held)
        self._calls, self._held = [], ""
        return out

    @property
    def calls(self) -> list[ToolCall]:
        return list(self._calls)

    def _scan(self) -> None:
        """Parse the complete JSON objects of the held text; set :attr:`done` once the model
        repeats a call or writes something other than a call after its calls."""
        text = self._held.replace(OPEN_TAG, "\n").replace(CLOSE_TAG, "\n")
        text = text.replace(FENCE + "json", "\n").replace(FENCE, "\n")
        decoder = json.JSONDecoder()
        pos, parsed = 0, False
        calls: list[ToolCall] = []
        seen: set[tuple[str, str]] = set()
        repeated = trailing = False
        while True:
            brace = text.find("{", pos)
            if brace < 0:
                tail = text[pos:].strip(" \t\r\n,")
                trailing = bool(tail) and not OPEN_TAG.startswith(tail[:11])
                break
            between = text[pos:brace].strip(" \t\r\n,")
            if between and calls:
                trailing = True
                break
            try:
                obj, end = decoder.raw_decode(text, brace)
            except ValueError:
                break  # incomplete (still streaming) or malformed
            parsed = True
            pos = end
            call = _as_call(obj, self._names, len(calls))
            if call is None:
                continue
            key = (call.name, call.arguments)
            if key in seen:
                repeated = True
                continue
            seen.add(key)
            calls.append(call)
        self._parsed_any = parsed
        self._calls = calls
        if calls and (repeated or trailing):
            self.done = True


def _call_start(text: str) -> int | None:
    """Where a tool call may begin in ``text``: a ``{``, the open tag, a Markdown code fence
    (a model wraps its call in one), or a tail that is a prefix of the tag or the fence (held
    until the next piece tells)."""
    starts = [i for i in (text.find("{"), text.find(OPEN_TAG), text.find(FENCE)) if i >= 0]
    for opener in (OPEN_TAG, FENCE):
        for k in range(min(len(opener) - 1, len(text)), 0, -1):
            if opener.startswith(text[-k:]):
                starts.append(len(text) - k)
                break
    return min(starts) if starts else None


def _not_a_call(held: str) -> bool:
    if held.startswith("<"):
        n = min(len(held), len(OPEN_TAG))
        return held[:n] != OPEN_TAG[:n]
    if held.startswith("`"):
        n = min(len(held), len(FENCE))
        if held[:n] != FENCE[:n]:
            return True
        rest = held[len(FENCE) :].lstrip()
        rest = rest[4:].lstrip() if rest.startswith("json") else rest
        return bool(rest) and not rest.startswith(("{", "<", "j"[: len(rest)]))
    rest = held[1:].lstrip()
    return bool(rest) and rest[0] != '"'


def _as_call(obj: Any, names: set[str], index: int) -> ToolCall | None:
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(
        id=f"call_{index}",
        name=str(obj["name"]),
        arguments=json.dumps(arguments, ensure_ascii=False, sort_keys=True),
    )
