"""MCP tool-call accuracy on prompt sets: keyword intents, LLM function calling, combined,
today's code beside the code of a base commit in the same run.

    .venv/bin/python -m bench.tools_bench --calls-only --threads 1   # both sets, before/after
    .venv/bin/python -m bench.tools_bench --sets heldout             # one set
    .venv/bin/python -m bench.tools_bench --llm-alone                # + the LLM on every prompt
    .venv/bin/python -m bench.tools_bench --baseline ''              # no before rows
    .venv/bin/python -m bench.tools_bench --no-tools-prompt          # without the tool instruction
    .venv/bin/python -m bench.tools_bench --chatml-fc                # + llama-cpp-python's handler

Prompt sets (``--sets``): ``dev`` (``bench/data/device_commands.json``: the firmware's common
tools and the lamp of its ``lamp_controller.h``, 7 tools; the keyword rules were tuned on it)
and ``heldout`` (``bench/data/device_commands_heldout.json``: written before the rules of issue
13's third session, another board with a GPIO fan switch, 8 tools). Each holds spoken device
commands with the calls they must produce and questions that must call no tool; the device
answers like the firmware (status JSON, ``true``, an error for an unknown tool). Paths:

- ``kw-before`` / ``comb-before``: devices/intents.py and devices/tool_loop.py as they were at
  ``--baseline`` (loaded with ``git show``), keywords alone and keywords-then-LLM;
- ``kw-after`` / ``comb-after``: today's code, the device turn's order (the LLM runs only where
  the keywords find nothing);
- ``llm-after`` (``--llm-alone``): today's tool loop on the real model on every prompt, native
  template (Qwen's ``<tool_call>`` format, parsed by core/models/tool_text.py);
- ``chatml-fc`` (``--chatml-fc``): llama-cpp-python's ``chatml-function-calling`` handler,
  one round (its first call only; relative requests cannot be right there).

Per path: right tool (every expected call's tool made, no other changing call), right tool and
arguments, false calls (a changing call on a question that needs none, or an extra changing
call), reads on questions that need none, seconds per prompt (the box is shared: absolute
figures are loaded-box figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.models.llm import ChatEvent, ChatMessage, LlmSettings, ToolCall, ToolSpec
from devices import tool_loop
from devices.device_controls import Controls
from devices.intents import missing, plan, run_steps
from devices.mcp import McpTool
from devices.memory import DEFAULT_SYSTEM_PROMPT
from devices.tool_loop import TOOL_TEMPERATURE, error_result, is_read, tool_specs

SETS = {  # --set NAME: the prompt file (a file may declare its own device tools)
    "dev": Path(__file__).resolve().parent / "data" / "device_commands.json",
    "heldout": Path(__file__).resolve().parent / "data" / "device_commands_heldout.json",
}
_INT = {"type": "integer", "minimum": 0, "maximum": 100}
FIRMWARE_TOOLS = [  # descriptions as the firmware's mcp_server.cc and lamp_controller.h
    McpTool(
        "self.get_device_status",
        "Provides the real-time information of the device, including the current status of the"
        " audio speaker, screen, battery, network, etc.\nUse this tool for: \n1. Answering"
        " questions about current condition (e.g. what is the current volume of the audio"
        " speaker?)\n2. As the first step to control the device (e.g. turn up / down the volume"
        " of the audio speaker, etc.)",
        {"type": "object", "properties": {}},
    ),
    McpTool(
        "self.audio_speaker.set_volume",
        "Set the volume of the audio speaker. If the current volume is unknown, you must call"
        " `self.get_device_status` tool first and then call this tool.",
        {"type": "object", "properties": {"volume": _INT}, "required": ["volume"]},
    ),
    McpTool(
        "self.screen.set_brightness",
        "Set the brightness of the screen.",
        {"type": "object", "properties": {"brightness": _INT}, "required": ["brightness"]},
    ),
    McpTool(
        "self.screen.set_theme",
        "Set the theme of the screen. The theme can be `light` or `dark`.",
        {"type": "object", "properties": {"theme": {"type": "string"}}, "required": ["theme"]},
    ),
    McpTool("self.lamp.get_state", "Get the power state of the lamp", {}),
    McpTool("self.lamp.turn_on", "Turn on the lamp", {}),
    McpTool("self.lamp.turn_off", "Turn off the lamp", {}),
]
STATUS = {
    "audio_speaker": {"volume": 70},
    "screen": {"brightness": 80, "theme": "light"},
    "battery": {"level": 85, "charging": False},
    "network": {"type": "wifi", "signal": "strong"},
}

Call = tuple[str, dict[str, Any]]


def answer(name: str) -> str:
    """What the firmware answers."""
    if name == "self.get_device_status":
        return json.dumps(STATUS)
    if is_read(name):  # self.lamp.get_state and the like: everything starts off
        return '{"power": false}'
    return "true"


def _value_ok(want: Any, got: Any) -> bool:
    if isinstance(want, str) and want[:1] in "<>" and isinstance(got, int | float):
        op = want.rstrip("0123456789")
        bound = float(want[len(op) :])
        return {"<": got < bound, ">": got > bound, "<=": got <= bound, ">=": got >= bound}[op]
    if isinstance(want, str) and isinstance(got, str):
        return want.casefold() == got.casefold()
    return bool(want == got)


@dataclass
class Score:
    right_tool: int = 0
    right_args: int = 0
    false_calls: int = 0  # changing calls nobody asked for
    reads_on_none: int = 0
    tool_prompts: int = 0
    none_prompts: int = 0
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, text: str, expect: list[Call], calls: list[Call], seconds: float) -> None:
        self.seconds.append(seconds)
        wanted = {name for name, _ in expect}
        changing = [(n, a) for n, a in calls if n in wanted or not is_read(n)]
        extra = [c for c in changing if c[0] not in wanted]
        if not expect:
            self.none_prompts += 1
            self.false_calls += bool(extra)
            self.reads_on_none += any(is_read(n) for n, _ in calls)
            if extra:
                self.failures.append(f"false call: {text!r} → {extra}")
            return
        self.tool_prompts += 1
        self.false_calls += bool(extra)
        made = {n for n, _ in changing}
        tools_ok = wanted <= made and not extra
        args_ok = tools_ok and all(
            any(
                n == name and all(_value_ok(v, a.get(k)) for k, v in want.items())
                for n, a in changing
            )
            for name, want in expect
        )
        self.right_tool += tools_ok
        self.right_args += args_ok
        if not args_ok:
            self.failures.append(f"{'wrong args' if tools_ok else 'wrong'}: {text!r} → {calls}")

    def row(self, name: str) -> str:
        n = self.tool_prompts
        per_s = sum(self.seconds) / max(1, len(self.seconds))
        return (
            f"{name:>12} {self.right_tool:>3}/{n} {self.right_tool / n:>5.0%}"
            f" {self.right_args:>3}/{n} {self.right_args / n:>5.0%}"
            f" {self.false_calls:>6} {self.reads_on_none:>6}/{self.none_prompts}"
            f" {per_s:>8.2f}"
        )


KeywordPath = Callable[[str, Sequence[McpTool]], Awaitable[list[Call] | None]]


async def keyword_calls(text: str, tools: Sequence[McpTool]) -> list[Call] | None:
    """The cheap path of the device turn (devices/intents.py); None when it matches nothing."""
    controls = Controls.of(tools)
    steps = plan(text, controls)
    if not steps:
        return [] if missing(text, controls) is not None else None  # "这台设备没有空调"

    async def call(name: str, arguments: dict[str, Any]) -> str:
        return answer(name)

    outcome = await run_steps(steps, call)
    return [(name, arguments) for name, arguments, _ in outcome.calls]


def module_at(rev: str, path: str) -> types.ModuleType:
    """``path`` as it was at git ``rev``, imported under another name (a before/after in one
    run: the code of before issue 13's third session beside today's)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    module = types.ModuleType(path.replace("/", "_").removesuffix(".py") + "_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def baseline_keywords(module: types.ModuleType) -> KeywordPath:
    """The keyword rules of an old devices/intents.py (``match_intent``: volume, brightness)."""

    async def calls(text: str, tools: Sequence[McpTool]) -> list[Call] | None:
        intent = module.match_intent(text, {t.name for t in tools})
        if intent is None:
            return None
        arguments = dict(intent.arguments)
        out: list[Call] = []
        if intent.relative:
            out.append((module.GET_STATUS, {}))
            current = module.current_value(answer(module.GET_STATUS), intent.tool) or 0
            value = max(0, min(100, current + intent.relative))
            arguments[module.argument_name(intent.tool)] = value
        out.append((intent.tool, arguments))
        return out

    return calls


class LlmPath:
    def __init__(
        self,
        llm: Any,
        tools: Sequence[McpTool],
        *,
        tools_prompt: bool,
        max_tokens: int,
        answer: bool,
        loop: types.ModuleType | None = None,
    ) -> None:
        self.loop = loop or tool_loop  # an old devices/tool_loop.py for the "before" rows
        self.answer = answer
        self.llm = llm
        self.tools = list(tools)
        self.specs = self.loop.tool_specs(tools)
        self.tools_prompt = tools_prompt
        self.max_tokens = max_tokens
        self.replies: list[tuple[str, str]] = []
        self.blocked = 0  # changing calls not run: the text names nothing of a device

    async def calls(self, text: str) -> list[Call]:
        async def chat(
            messages: list[ChatMessage], tools: Sequence[ToolSpec]
        ) -> AsyncIterator[ChatEvent]:
            if not self.tools_prompt:  # ablation: the system prompt without TOOLS_PROMPT
                messages = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), *messages[1:]]
            events = self.llm.stream_chat_events(
                messages,
                tools=tools,
                max_tokens=self.max_tokens,
                temperature=self.loop.TOOL_TEMPERATURE,
                check=lambda: None,
            )
            for event in events:
                yield event

        declared_names = {t.name for t in self.tools}

        async def call(c: ToolCall) -> str:  # the firmware answers an unknown tool with an error
            known = c.name in declared_names
            return answer(c.name) if known else error_result(f"Unknown tool: {c.name}")

        run = self.loop.ToolRun()
        pieces = [
            p
            async for p in self.loop.tool_rounds(
                [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("user", text)],
                self.specs,
                chat=chat,
                call=call,
                run=run,
                answer=self.answer,
            )
        ]
        self.replies.append((text, "".join(pieces)))
        declared = {t.name: t.properties() for t in self.tools}
        calls: list[Call] = []
        for c, _ in run.calls:  # the arguments the turn sends: declared properties only
            arguments = json.loads(c.arguments or "{}")
            props = declared.get(c.name, {})
            calls.append((c.name, {k: v for k, v in arguments.items() if k in props}))
        self.blocked += run.blocked
        return calls


def chatml_fc_calls(llama: Any, text: str, max_tokens: int, tools: Sequence[McpTool]) -> list[Call]:
    from llama_cpp import llama_chat_format

    result = llama_chat_format.chatml_function_calling(
        llama=llama,
        messages=[
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": text},
        ],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": s.name,
                    "description": s.description,
                    "parameters": dict(s.parameters),
                },
            }
            for s in tool_specs(tools)
        ],
        tool_choice="auto",
        max_tokens=max_tokens,
        temperature=TOOL_TEMPERATURE,
    )
    out: list[Call] = []
    for call in result["choices"][0]["message"].get("tool_calls") or []:
        try:
            args = json.loads(call["function"]["arguments"] or "{}")
        except ValueError:
            args = {"unparsable": call["function"]["arguments"]}
        out.append((call["function"]["name"], args if isinstance(args, dict) else {}))
    return out


def load_set(name: str) -> tuple[list[tuple[str, list[Call]]], list[McpTool]]:
    """A prompt set's prompts (text, expected calls) and the tools its device declares."""
    data = json.loads(SETS[name].read_text(encoding="utf-8"))
    prompts: list[tuple[str, list[Call]]] = [
        (text, [(n, a) for n, a in expect]) for text, expect in data["tool"]
    ] + [(text, []) for text in data["none"]]
    tools = [
        McpTool(t["name"], t.get("description", ""), t.get("inputSchema", {}))
        for t in data.get("tools", [])
    ]
    return prompts, tools or FIRMWARE_TOOLS


async def run_set(name: str, llm: Any, args: argparse.Namespace) -> None:
    prompts, tools = load_set(name)
    n_tool = sum(bool(expect) for _, expect in prompts)
    print(
        f"\n=== set {name}: {n_tool} tool prompts, {len(prompts) - n_tool} without;"
        f" {len(tools)} device tools; load average {os.getloadavg()[0]:.1f}"
    )

    def llm_path(loop: types.ModuleType | None) -> LlmPath:
        return LlmPath(
            llm,
            tools,
            tools_prompt=args.tools_prompt,
            max_tokens=args.max_tokens,
            answer=not args.calls_only,
            loop=loop,
        )

    after = llm_path(None)
    before = llm_path(module_at(args.baseline, "devices/tool_loop.py")) if args.baseline else None
    keywords_before = (
        baseline_keywords(module_at(args.baseline, "devices/intents.py")) if args.baseline else None
    )
    # the LLM runs only where the keywords do not answer (the turn's order), unless --llm-alone
    paths = ["kw-before", "comb-before"] if before is not None else []
    paths += ["kw-after", "comb-after"] + (["llm-after"] if args.llm_alone else [])
    scores = {name: Score() for name in paths}
    if args.chatml_fc:
        scores["chatml-fc"] = Score()
    if args.limit:
        prompts = prompts[: args.limit // 2] + prompts[-(args.limit - args.limit // 2) :]
    for text, expect in prompts:
        line = f"  {text}:"
        if before is not None and keywords_before is not None:
            start = time.perf_counter()
            by_keywords = await keywords_before(text, tools)
            scores["kw-before"].add(text, expect, by_keywords or [], time.perf_counter() - start)
            calls = by_keywords if by_keywords is not None else await before.calls(text)
            scores["comb-before"].add(text, expect, calls, time.perf_counter() - start)
            line += f" before {'kw' if by_keywords is not None else 'llm'} {calls};"
        start = time.perf_counter()
        by_keywords = await keyword_calls(text, tools)
        scores["kw-after"].add(text, expect, by_keywords or [], time.perf_counter() - start)
        by_llm = await after.calls(text) if by_keywords is None or args.llm_alone else None
        calls = by_keywords if by_keywords is not None else by_llm or []
        scores["comb-after"].add(text, expect, calls, time.perf_counter() - start)
        line += f" after {'kw' if by_keywords is not None else 'llm'} {calls}"
        if args.llm_alone:
            scores["llm-after"].add(text, expect, by_llm or [], time.perf_counter() - start)
            line += f"; llm alone {by_llm}"
        if args.chatml_fc:
            start = time.perf_counter()
            fc_calls = chatml_fc_calls(llm._llama, text, args.max_tokens, tools)
            scores["chatml-fc"].add(text, expect, fc_calls, time.perf_counter() - start)
            line += f", chatml-fc {fc_calls}"
        print(line, flush=True)
    print(
        f"\n{'path':>12} {'right tool':>10} {'+ args':>10} {'false':>6} {'reads':>8}"
        f" {'s/prompt':>8}"
    )
    for name, score in scores.items():
        print(score.row(name))
    for name, score in scores.items():
        print(f"\n{name}:")
        for line in score.failures:
            print(f"  {line}")
    for label, path in (("before", before), ("after", after)):
        if path is None:
            continue
        print(f"\nllm {label}: {path.blocked} changing calls blocked (no device word)")
        for text, reply in path.replies:
            print(f"  {text} → {reply!r}")


async def main(args: argparse.Namespace) -> None:
    from core.models.llamacpp.llm import LlamaCppLlm

    print(
        f"cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f} (shared box: seconds are"
        " loaded-box figures)"
    )
    settings = LlmSettings(n_threads=args.threads, max_tokens=args.max_tokens)
    llm = LlamaCppLlm(settings, cache_dir=Path(args.model_cache))
    llm.load()
    for name in args.sets.split(","):
        await run_set(name, llm, args)
    llm.unload()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tools-prompt", dest="tools_prompt", action="store_false")
    parser.add_argument("--chatml-fc", action="store_true")
    parser.add_argument(
        "--calls-only", action="store_true", help="skip the answer round after a changing call"
    )
    parser.add_argument(
        "--sets", default="dev,heldout", help=f"prompt sets, comma-separated: {', '.join(SETS)}"
    )
    parser.add_argument(
        "--baseline",
        default="e4ce741",
        help="git rev whose devices/intents.py is the 'before' keyword path ('' to skip)",
    )
    parser.add_argument(
        "--llm-alone", action="store_true", help="also run the LLM on every prompt (a row)"
    )
    parser.add_argument("--limit", type=int, default=0, help="first/last prompts only (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--model-cache", default="data/models", help="assembled embedded GGUF")
    asyncio.run(main(parser.parse_args()))
