"""Device tool calls on a prompt set: how often the keyword path calls the right MCP tool.

    .venv/bin/python -m bench.intents_bench

Each prompt names the tool call it should produce (tool and arguments, or a relative step) or
none (the LLM answers). Tools are those of the xiaozhi firmware's common set. Prints accuracy,
wrong calls (a tool called that should not be, or wrong arguments) and misses.
"""

from __future__ import annotations

import time

from devices.intents import GET_STATUS, SET_BRIGHTNESS, SET_VOLUME, IntentCall, match_intent

TOOLS = {GET_STATUS, SET_VOLUME, SET_BRIGHTNESS, "self.screen.set_theme"}
V, B = SET_VOLUME, SET_BRIGHTNESS

# (prompt, expected: (tool, arguments or relative step) or None)
PROMPTS: list[tuple[str, tuple[str, dict[str, int] | int] | None]] = [
    ("把音量调到60", (V, {"volume": 60})),
    ("音量调到六十", (V, {"volume": 60})),
    ("音量设成三十五", (V, {"volume": 35})),
    ("把声音调到百分之八十", (V, {"volume": 80})),
    ("音量调到最大", (V, {"volume": 100})),
    ("音量一百", (V, {"volume": 100})),
    ("声音大一点", (V, 10)),
    ("音量调大一些", (V, 10)),
    ("把音量调高", (V, 10)),
    ("声音小一点", (V, -10)),
    ("音量调低一点", (V, -10)),
    ("静音", (V, {"volume": 0})),
    ("把声音关掉静音吧", (V, {"volume": 0})),
    ("亮度调到50", (B, {"brightness": 50})),
    ("屏幕亮度调到二十", (B, {"brightness": 20})),
    ("把亮度调高一点", (B, 10)),
    ("亮度调暗一点", (B, -10)),
    ("set the volume to 40", (V, {"volume": 40})),
    ("volume up", (V, 10)),
    ("turn the volume down", (V, -10)),
    ("大声点", (V, 10)),
    ("小声点", (V, -10)),
    # no tool: the LLM answers
    ("现在音量是多少", None),
    ("今天天气怎么样", None),
    ("给我讲个笑话", None),
    ("澳大利亚的首都是哪里", None),
    ("帮我设置一个十分钟的计时器", None),
    ("声音真好听", None),
    ("你几岁了", None),
    ("what is the capital of australia", None),
]


def _expected(call: IntentCall | None) -> tuple[str, dict[str, int] | int] | None:
    if call is None:
        return None
    return (call.tool, call.relative) if call.relative else (call.tool, dict(call.arguments))


def main() -> None:
    right = wrong = missed = 0
    start = time.perf_counter()
    for prompt, expected in PROMPTS:
        got = _expected(match_intent(prompt, TOOLS))
        if got == expected:
            right += 1
        elif got is None:
            missed += 1
            print(f"  missed: {prompt!r} (expected {expected})")
        else:
            wrong += 1
            print(f"  wrong:  {prompt!r} → {got} (expected {expected})")
    per_us = (time.perf_counter() - start) / len(PROMPTS) * 1e6
    tool_prompts = sum(1 for _, e in PROMPTS if e is not None)
    print(
        f"{len(PROMPTS)} prompts ({tool_prompts} need a tool): {right} right "
        f"({right / len(PROMPTS):.0%}), {wrong} wrong calls, {missed} missed; "
        f"{per_us:.0f} µs per prompt"
    )


if __name__ == "__main__":
    main()
