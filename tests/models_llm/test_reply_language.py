"""A reply opening in the other language than the question's is stopped before it is sent and
generated again (seen in bench.voice_zh_bench: "帮我设置一个十分钟的计时器，然后提醒我检查烤箱。"
→ "Sure, I can help you with that. What do you want to set the timer to?")."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.models.chat_guard import ReplyGuard
from core.models.inference import PARROT_RETRY_TEMPERATURE_STEP
from core.models.reply_language import Verdict, expected_reply_language, opening_verdict
from tests.models_llm.test_parrot_retry import ask

TIMER = "帮我设置一个十分钟的计时器，然后提醒我检查烤箱。"


@pytest.mark.parametrize(
    ("expected", "reply", "verdict"),
    [
        ("zh", "好的", Verdict.RIGHT),
        ("zh", "Python是一种语言", Verdict.RIGHT),
        ("zh", "OK，好的", Verdict.RIGHT),
        ("zh", "25度", Verdict.RIGHT),
        ("zh", "Sure, I ca", Verdict.PENDING),  # two whole words: not decided yet
        ("zh", "Sure, I can help", Verdict.WRONG),
        ("zh", "😊 ", Verdict.PENDING),
        ("en", "The", Verdict.RIGHT),  # the first piece flows at once
        ("en", "The capital", Verdict.RIGHT),
        ("en", "好的", Verdict.PENDING),
        ("en", "北京是中国", Verdict.WRONG),
    ],
)
def test_the_opening_decides_the_reply_language(
    expected: str, reply: str, verdict: Verdict
) -> None:
    assert opening_verdict(expected, reply) is verdict


def test_a_question_asking_for_another_language_accepts_any_reply() -> None:
    assert expected_reply_language(TIMER) == "zh"
    assert expected_reply_language("What is the capital of Australia?") == "en"
    assert expected_reply_language("“你好”用英语怎么说？") is None
    assert expected_reply_language("Translate 'thank you' into Chinese") is None
    assert expected_reply_language("123") is None


def test_the_guard_sends_nothing_of_a_reply_in_the_other_language() -> None:
    guard = ReplyGuard(user_text=TIMER, reply_language="zh")
    sent = "".join(guard.push(p) for p in ["Sure", ",", " I", " can", " help"])
    assert sent == "" and guard.stop_reason == "language"


def test_a_reply_in_the_right_language_flows_at_its_first_piece() -> None:
    guard = ReplyGuard(user_text=TIMER, reply_language="zh")
    assert guard.push("好的，") == "好的，"
    guard = ReplyGuard(user_text="What is the capital of Australia?", reply_language="en")
    assert guard.push("The") == "The"


async def test_a_reply_in_the_other_language_is_generated_again(tmp_path: Path) -> None:
    text, llm = await ask(
        ["Sure, I can help you with that.", "好的，已经设置了十分钟的计时器。"], TIMER, tmp_path
    )
    assert text == "好的，已经设置了十分钟的计时器。"
    assert llm.temperatures == [0.7, 0.7 + PARROT_RETRY_TEMPERATURE_STEP]
    assert llm.pieces <= 8 + len(text) // 2 + 1  # the English attempt stopped after 3 words


async def test_the_last_attempt_is_sent_whatever_its_language(tmp_path: Path) -> None:
    text, llm = await ask(["Sure, I can help you with that."] * 5, TIMER, tmp_path)
    assert text == "Sure, I can help you with that." and len(llm.temperatures) == 3


def test_the_parts_count_the_same_characters_as_hanzi() -> None:
    """The reply guard, this rule, whisper's loop check and TTS routing each had their own
    hanzi ranges (extension B and 〇 were hanzi to TTS routing only)."""
    from core.models import reply_language
    from core.models.hanzi import is_han
    from core.models.whisper import loops

    chars = "中㐀豈𠀀〇aé１，"
    assert [is_han(c) for c in chars] == [True] * 5 + [False] * 4
    assert [bool(reply_language._HAN.fullmatch(c)) for c in chars] == [is_han(c) for c in chars]
    # whisper's loop check reads each hanzi as a token of its own, a run of others as one
    assert loops._TOKEN.findall("𠀀〇ab") == ["𠀀", "〇", "ab"]
