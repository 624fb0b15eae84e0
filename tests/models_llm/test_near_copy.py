"""Near copies of a message (core/models/near_copy.py): normalized strings, a few edits."""

from __future__ import annotations

from core.models.near_copy import allowed_edits, copied_prefix, is_copy, may_become_copy


def test_edits_allowed_grow_with_the_message() -> None:
    assert allowed_edits("你好呀") == 0
    assert allowed_edits("行目弄得矮一点") == 1
    assert allowed_edits("帮我设置一个十分钟的计时器然后提醒我") == 2


def test_copies_start_like_the_message_and_stay_within_the_edits() -> None:
    assert is_copy("行目弄矮一点", "行目弄得矮一点")  # one deleted
    assert is_copy("行目弄得矮一点吧", "行目弄得矮一点")  # one added
    assert not is_copy("行目弄矮点", "行目弄得矮一点")  # two off a 7-character message
    assert not is_copy("目弄得矮一点", "行目弄得矮一点")  # another start
    assert is_copy("你好呀", "你好呀") and not is_copy("你好啊", "你好呀")


def test_a_reply_is_held_only_while_it_could_become_a_copy() -> None:
    message = "今天天气怎么样"
    assert may_become_copy("今天天气晴", message)  # one substitution so far
    assert not may_become_copy("今天天气晴朗", message)
    assert not may_become_copy("好的", message)  # another first character: never held


def test_the_copied_start_of_a_longer_reply() -> None:
    assert copied_prefix("行目弄矮一点抱歉", "行目弄得矮一点") == 6
    assert copied_prefix("今天天气晴朗", "今天天气怎么样") == 0
