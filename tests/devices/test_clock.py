"""Questions about the time and the date are answered from the clock, in the device's zone, and
never by the LLM (the 0.5B model, asked "What time is it" on the trial server at 17:46 UTC,
said "It's 10:30 AM."). Recognition, the spoken words, and a turn through the firmware
emulator over loopback with an LLM double that must not be asked."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from devices.clock import ClockQuestion, clock_question, clock_reply, spoken_answer, zh_number
from tests.devices.conftest import StartHub
from tests.devices.fakes import FakeInference
from tests.devices.firmware_emulator import FirmwareEmulator

# 2026-12-04 17:46:30 UTC, a Friday; in UTC+8 it is already Saturday 01:46
FRIDAY_EVENING_UTC_S = 1796406390.0


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("现在几点了？", (ClockQuestion.TIME, "zh")),
        ("几点了", (ClockQuestion.TIME, "zh")),
        ("请问现在几点钟", (ClockQuestion.TIME, "zh")),
        ("现在什么时间?", (ClockQuestion.TIME, "zh")),
        ("现在的时间是多少", (ClockQuestion.TIME, "zh")),
        ("今天星期几？", (ClockQuestion.WEEKDAY, "zh")),
        ("今天礼拜几呀", (ClockQuestion.WEEKDAY, "zh")),
        ("今天几号", (ClockQuestion.DATE, "zh")),
        ("今天是几月几号?", (ClockQuestion.DATE, "zh")),
        ("What time is it?", (ClockQuestion.TIME, "en")),
        ("what's the time", (ClockQuestion.TIME, "en")),
        ("What day is it today?", (ClockQuestion.WEEKDAY, "en")),
        ("What's the date today?", (ClockQuestion.DATE, "en")),
    ],
)
def test_the_common_ways_of_asking_are_recognised(
    text: str, asked: tuple[ClockQuestion, str]
) -> None:
    assert clock_question(text) == asked


@pytest.mark.parametrize(
    "text",
    [
        "明天几点开会",
        "你几点下班",
        "时间",
        "几点起床比较好",
        "今天天气怎么样",
        "What time do you close?",
    ],
)
def test_a_question_that_only_mentions_the_time_goes_to_the_llm(text: str) -> None:
    assert clock_question(text) is None


@pytest.mark.parametrize(
    ("n", "said"), [(0, "零"), (2, "二"), (10, "十"), (15, "十五"), (20, "二十"), (46, "四十六")]
)
def test_numbers_as_they_are_said(n: int, said: str) -> None:
    assert zh_number(n) == said


@pytest.mark.parametrize(
    ("hour", "minute", "zh", "en"),
    [
        (0, 0, "现在是凌晨零点整。", "It's 12:00 AM."),
        (2, 5, "现在是凌晨两点零五分。", "It's 2:05 AM."),
        (9, 30, "现在是上午九点三十分。", "It's 9:30 AM."),
        (12, 0, "现在是中午十二点整。", "It's 12:00 PM."),
        (17, 46, "现在是下午五点四十六分。", "It's 5:46 PM."),
        (23, 59, "现在是晚上十一点五十九分。", "It's 11:59 PM."),
    ],
)
def test_the_time_in_the_words_a_person_says(hour: int, minute: int, zh: str, en: str) -> None:
    now = datetime(2026, 12, 4, hour, minute)
    assert spoken_answer(ClockQuestion.TIME, "zh", now) == zh
    assert spoken_answer(ClockQuestion.TIME, "en", now) == en


def test_the_answer_is_in_the_device_s_zone() -> None:
    at = FRIDAY_EVENING_UTC_S
    assert clock_reply("现在几点了", utc_offset_min=0, now_s=at) == "现在是下午五点四十六分。"
    assert clock_reply("现在几点了", utc_offset_min=480, now_s=at) == "现在是凌晨一点四十六分。"
    assert clock_reply("今天几号", utc_offset_min=0, now_s=at) == "今天是十二月四日，星期五。"
    assert clock_reply("今天几号", utc_offset_min=480, now_s=at) == "今天是十二月五日，星期六。"
    assert clock_reply("What day is it", utc_offset_min=480, now_s=at) == "Today is Saturday."


async def test_a_device_asked_the_time_answers_from_the_clock_without_the_llm(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, timezone_offset_min=480)
    emu = FirmwareEmulator(server.http)
    server.simulators.append(emu)
    await emu.boot()
    reply = "".join(await emu.typed_turn("现在几点了？"))
    assert re.fullmatch(
        r"现在是(凌晨|早上|上午|中午|下午|晚上)[零一两二三四五六七八九十]+点.+。", reply
    )
    date = "".join(await emu.typed_turn("今天星期几"))
    assert re.fullmatch(r"今天是星期[一二三四五六日]。", date)
    assert fake.started.get("llm", 0) == 0


async def test_clock_answers_can_be_turned_off(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake, clock_answers=False)
    emu = FirmwareEmulator(server.http)
    server.simulators.append(emu)
    await emu.boot()
    await emu.typed_turn("现在几点了？")
    assert fake.started.get("llm", 0) == 1
