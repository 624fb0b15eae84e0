"""The cheap path to device tools: common spoken intents matched by keywords, no LLM.

A small LLM calls functions unreliably; "把音量调到 60" must still set the volume. Each rule
needs a tool the device really offers (by its firmware name) and yields one ``tools/call`` plus
a short Chinese confirmation. Relative requests ("大声点") read the current value from
``self.get_device_status`` first, as the firmware's tool description asks. Anything unmatched
goes to the LLM as usual.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

SET_VOLUME = "self.audio_speaker.set_volume"
SET_BRIGHTNESS = "self.screen.set_brightness"
GET_STATUS = "self.get_device_status"
STEP = 10  # "louder" / "brighter" move by this much

_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_CN_DIGITS.update({"六": 6, "七": 7, "八": 8, "九": 9})


def chinese_number(text: str) -> int | None:
    """``60``, ``六十``, ``六十五``, ``一百``, ``百分之三十`` → an int (None if none)."""
    text = re.sub(r"[一]?(点儿?|些|下)", "", text)  # "大一点", "调一下": no number
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


@dataclass(frozen=True, slots=True)
class IntentCall:
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)
    relative: int = 0  # ±STEP: add to the current value (read from the status first)
    reply: str = ""  # {value} is filled in


_VOLUME = re.compile(r"音量|声音|volume|^(说话)?[大小]声一?点", re.IGNORECASE)
_BRIGHT = re.compile(r"亮度|屏幕.*(亮|暗)|brightness", re.IGNORECASE)
_UP = re.compile(r"大一?点|大声|调大|调高|提高|增大|加大|高一?点|louder|up", re.IGNORECASE)
_DOWN = re.compile(r"小一?点|小声|调小|调低|降低|减小|低一?点|quieter|down", re.IGNORECASE)
_BRIGHTER = re.compile(r"亮一?点|调亮|调高|提高|brighter|up", re.IGNORECASE)
_DIMMER = re.compile(r"暗一?点|调暗|调低|降低|dimmer|down", re.IGNORECASE)
_MUTE = re.compile(r"静音|mute", re.IGNORECASE)
_MAX = re.compile(r"最大|max", re.IGNORECASE)
_QUESTION = re.compile(r"多少|几|是什么|what", re.IGNORECASE)


def match_intent(text: str, tools: set[str]) -> IntentCall | None:
    """The tool call ``text`` asks for, if it is one of the common intents and the device has
    the tool."""
    if _VOLUME.search(text) and SET_VOLUME in tools:
        if _MUTE.search(text):
            return IntentCall(SET_VOLUME, {"volume": 0}, reply="好的，已静音。")
        number = chinese_number(text)
        if number is not None and not _QUESTION.search(text):
            volume = max(0, min(100, number))
            return IntentCall(SET_VOLUME, {"volume": volume}, reply="好的，音量已调到{value}。")
        if _MAX.search(text):
            return IntentCall(SET_VOLUME, {"volume": 100}, reply="好的，音量已调到最大。")
        if _UP.search(text):
            return IntentCall(SET_VOLUME, relative=STEP, reply="好的，音量调到{value}了。")
        if _DOWN.search(text):
            return IntentCall(SET_VOLUME, relative=-STEP, reply="好的，音量调到{value}了。")
    elif _MUTE.search(text) and SET_VOLUME in tools:
        return IntentCall(SET_VOLUME, {"volume": 0}, reply="好的，已静音。")
    if _BRIGHT.search(text) and SET_BRIGHTNESS in tools:
        number = chinese_number(text)
        if number is not None and not _QUESTION.search(text):
            value = max(0, min(100, number))
            return IntentCall(
                SET_BRIGHTNESS, {"brightness": value}, reply="好的，亮度已调到{value}。"
            )
        if _BRIGHTER.search(text):
            return IntentCall(SET_BRIGHTNESS, relative=STEP, reply="好的，亮度调到{value}了。")
        if _DIMMER.search(text):
            return IntentCall(SET_BRIGHTNESS, relative=-STEP, reply="好的，亮度调到{value}了。")
    return None


def current_value(status_text: str, tool: str) -> int | None:
    """The current volume or brightness in a ``self.get_device_status`` answer."""
    try:
        status = json.loads(status_text)
    except ValueError:
        return None
    section, key = ("audio_speaker", "volume") if tool == SET_VOLUME else ("screen", "brightness")
    value = status.get(section, {}).get(key) if isinstance(status, dict) else None
    return int(value) if isinstance(value, int | float) else None


def argument_name(tool: str) -> str:
    return "volume" if tool == SET_VOLUME else "brightness"
