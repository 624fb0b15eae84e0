"""Questions about the time and the date, answered from the server's clock, not by the LLM.

A 0.5B model asked "What time is it?" on a device says a time it makes up ("It's 10:30 AM."
at 17:46). A speaker is asked that every day, so the common ways of asking it ("现在几点了",
"今天星期几", "今天几号", "What time is it", "What day is it") are recognised here, the whole
utterance and nothing else (a question that only mentions the time, "明天几点开会", goes to
the LLM), and answered in the words a person says ("现在是下午五点四十六分。"), in the zone of
the device (``devices.timezone_offset_min``, the one the OTA answer gives the firmware).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum

_DIGITS = "零一二三四五六七八九"
_WEEKDAYS_ZH = "一二三四五六日"
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class ClockQuestion(Enum):
    TIME = "time"
    DATE = "date"  # the date and the weekday: "今天几号" is answered with both
    WEEKDAY = "weekday"


_ZH_POLITE = r"(?:请问|问一下|你知道|告诉我|小智)?[，,]?"
_ZH_END = r"(?:了|呀|啊|呢|吗|啦|哇)*"
_ZH = [
    (
        ClockQuestion.TIME,
        re.compile(
            rf"^{_ZH_POLITE}(?:现在|目前|这会儿)?(?:是)?"
            rf"(?:几点(?:钟|了|几分)?|什么时间|多少点){_ZH_END}$"
        ),
    ),
    (
        ClockQuestion.TIME,
        re.compile(rf"^{_ZH_POLITE}(?:现在的?时间(?:是)?(?:多少|几点)?|时间是?多少){_ZH_END}$"),
    ),
    (
        ClockQuestion.WEEKDAY,
        re.compile(rf"^{_ZH_POLITE}(?:今天|今儿)(?:是)?(?:星期|礼拜|周)几{_ZH_END}$"),
    ),
    (
        ClockQuestion.DATE,
        re.compile(rf"^{_ZH_POLITE}(?:今天|今儿)(?:是)?(?:几月)?(?:几号|几日|多少号){_ZH_END}$"),
    ),
    (
        ClockQuestion.DATE,
        re.compile(rf"^{_ZH_POLITE}(?:今天的?)?日期(?:是)?(?:多少|什么){_ZH_END}$"),
    ),
]
_EN = [
    (
        ClockQuestion.TIME,
        re.compile(
            r"^(?:hey |excuse me |please )?(?:what time is it(?: now)?|what's the time|"
            r"what is the time(?: now)?|do you know what time it is|tell me the time)$"
        ),
    ),
    (ClockQuestion.WEEKDAY, re.compile(r"^(?:what day is it(?: today)?|what day is today)$")),
    (
        ClockQuestion.DATE,
        re.compile(
            r"^(?:what's the date(?: today)?|what is the date(?: today)?|"
            r"what is today's date|what's today's date)$"
        ),
    ),
]
_PUNCT = re.compile(r"[\s。？！，、,.?!~～…]+")


def clock_question(text: str) -> tuple[ClockQuestion, str] | None:
    """The question ``text`` is and its language ("zh", "en"), or None when it is not one."""
    plain = _PUNCT.sub(" ", text).strip()
    zh = plain.replace(" ", "")
    for kind, pattern in _ZH:
        if pattern.match(zh):
            return kind, "zh"
    en = plain.lower().replace("’", "'")
    for kind, pattern in _EN:
        if pattern.match(en):
            return kind, "en"
    return None


def zh_number(n: int) -> str:
    """0–99 as it is said: 2 → 二, 10 → 十, 15 → 十五, 46 → 四十六."""
    if not 0 <= n < 100:
        raise ValueError(f"{n} is not 0–99")
    tens, ones = divmod(n, 10)
    if tens == 0:
        return _DIGITS[ones]
    return ("" if tens == 1 else _DIGITS[tens]) + "十" + (_DIGITS[ones] if ones else "")


def _zh_period(hour: int) -> str:
    if hour < 5:
        return "凌晨"
    if hour < 8:
        return "早上"
    if hour < 11:
        return "上午"
    if hour < 13:
        return "中午"
    if hour < 18:
        return "下午"
    return "晚上"


def _zh_time(now: datetime) -> str:
    hour12 = now.hour if now.hour <= 12 else now.hour - 12  # midnight is 凌晨零点
    hour = "两" if hour12 == 2 else zh_number(hour12)
    if now.minute == 0:
        minutes = "整"
    elif now.minute < 10:
        minutes = f"零{zh_number(now.minute)}分"
    else:
        minutes = f"{zh_number(now.minute)}分"
    return f"现在是{_zh_period(now.hour)}{hour}点{minutes}。"


def _zh_date(now: datetime) -> str:
    month, day = zh_number(now.month), zh_number(now.day)
    return f"今天是{month}月{day}日，星期{_WEEKDAYS_ZH[now.weekday()]}。"


def _en_time(now: datetime) -> str:
    hour12 = now.hour % 12 or 12
    return f"It's {hour12}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}."


def spoken_answer(question: ClockQuestion, language: str, now: datetime) -> str:
    """The answer to ``question`` at ``now`` (an aware datetime in the device's zone)."""
    if language == "zh":
        if question is ClockQuestion.TIME:
            return _zh_time(now)
        if question is ClockQuestion.WEEKDAY:
            return f"今天是星期{_WEEKDAYS_ZH[now.weekday()]}。"
        return _zh_date(now)
    if question is ClockQuestion.TIME:
        return _en_time(now)
    weekday = _WEEKDAYS_EN[now.weekday()]
    if question is ClockQuestion.WEEKDAY:
        return f"Today is {weekday}."
    return f"Today is {weekday}, {_MONTHS_EN[now.month - 1]} {now.day}."


def clock_reply(text: str, *, utc_offset_min: int, now_s: float) -> str | None:
    """The spoken answer when ``text`` asks the time or the date, else None."""
    asked = clock_question(text)
    if asked is None:
        return None
    zone = timezone(timedelta(minutes=utc_offset_min))
    now = datetime.fromtimestamp(now_s, UTC).astimezone(zone)
    return spoken_answer(asked[0], asked[1], now)
