"""ReplyGuard: loops and repeated sentences end a reply without being sent, prompt echoes are
cut, the sentence bound holds, and ordinary text flows through piece by piece."""

from __future__ import annotations

import pytest

from core.models import chat_guard
from core.models.chat_guard import ReplyGuard

PERSONA = (
    "你是小优，QQ 群里友好、简洁的聊天助手。用对方使用的语言回答：对方说中文就用简体中文，"
    "说英文就用英文。"
)


def run(text: str, *, piece_chars: int = 2, **kwargs: object) -> tuple[str, str | None, int]:
    """Stream ``text`` in pieces through a guard: (what was passed on, why it stopped, how
    many pieces were consumed before it stopped)."""
    guard = ReplyGuard(**kwargs)  # type: ignore[arg-type]
    pieces = [text[i : i + piece_chars] for i in range(0, len(text), piece_chars)]
    out: list[str] = []
    consumed = 0
    for piece in pieces:
        consumed += 1
        out.append(guard.push(piece))
        if guard.stop_reason is not None:
            break
    else:
        out.append(guard.finish())
    return "".join(out), guard.stop_reason, consumed


def test_english_loop_from_the_issue_is_cut_after_the_first_copy() -> None:
    text, reason, consumed = run("I'm all ears! " * 40)
    assert text.strip() == "I'm all ears!"
    assert reason is not None
    assert consumed < 20  # the model was stopped early, not run to max_tokens


def test_chinese_sentence_loop_from_the_issue_is_cut() -> None:
    text, reason, _ = run("阿明福恶天气怎么更新？" * 12)
    assert text == "阿明福恶天气怎么更新？"
    assert reason == "repeated sentence"


def test_short_unit_loop_without_punctuation() -> None:
    text, reason, _ = run("好的，我来讲一个故事" + "哈" * 60)
    assert reason == "loop"
    assert text.startswith("好的") and "哈" * 16 not in text


def test_a_repeated_sentence_is_never_sent_even_partly() -> None:
    text, reason, _ = run("Sure thing! Let me think. Sure thing! Let me think. Sure thing!")
    assert text.rstrip() == "Sure thing! Let me think."
    assert reason == "repeated sentence"


def test_ordinary_replies_pass_unchanged_and_flow_early() -> None:
    zh = "北京是中华人民共和国的首都，也是全国的政治和文化中心。明天可能下雨，记得带伞哦！"
    en = "The capital of France is Paris. It is known for the Eiffel Tower and good food."
    laugh = "哈哈哈，这个笑话真好笑！好的好的，我再讲一个。"
    for sample in (zh, en, laugh):
        text, reason, _ = run(sample)
        assert (text, reason) == (sample, None)
    guard = ReplyGuard()
    assert guard.push("北京是") == "北京是"  # novel text is not held back


def test_echo_of_the_system_prompt_is_cut() -> None:
    text, reason, _ = run("好的！" + PERSONA, system_prompt=PERSONA)
    assert reason == "echo"
    assert text == "好的！"
    english = "You are Xiaoyou, a friendly voice assistant. Answer in one to three short sentences."
    text, reason, _ = run("Hello! " + english, system_prompt=english)
    assert reason == "echo" and text.strip() == "Hello!"


def test_saying_who_it_is_is_not_an_echo() -> None:
    sample = "我是小优，QQ群里的聊天助手，有什么可以帮你？"
    assert run(sample, system_prompt=PERSONA)[:2] == (sample, None)


def test_sentence_bound_ends_the_reply_at_a_sentence_end() -> None:
    text, reason, consumed = run("第一句。第二句！Third one. Fourth one. 第五句。", max_sentences=3)
    assert text == "第一句。第二句！Third one."
    assert reason == "max sentences"
    assert consumed < 20
    listing = "1. 苹果\n2. 香蕉\n3. 橙子\n"
    assert run(listing, max_sentences=3)[0] == listing  # "1." is not a sentence end


def test_code_blocks_may_repeat_lines() -> None:
    code = "```python\nfor i in range(3):\n    print(i)\n    print(i)\n```\n这样就行。"
    assert run(code, max_sentences=2)[:2] == (code, None)


def test_sentence_bound_alone_when_loop_detection_is_off() -> None:
    text, reason, _ = run("好。" * 5, max_sentences=4, detect_loops=False)
    assert (text, reason) == ("好。" * 4, "max sentences")


def test_work_per_piece_does_not_grow_with_the_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long reply without a sentence end (a cloud LLM's 300 tokens): each piece normalizes
    only its own characters, not the whole sentence so far (quadratic on the event loop)."""
    calls = 0
    real = chat_guard._norm_char

    def counted(ch: str) -> str:
        nonlocal calls
        calls += 1
        return real(ch)

    monkeypatch.setattr(chat_guard, "_norm_char", counted)
    guard = ReplyGuard(system_prompt=PERSONA)
    pieces = [f"字{i}" for i in range(600)]
    out = "".join(guard.push(p) for p in pieces) + guard.finish()
    assert out == "".join(pieces) and guard.stop_reason is None
    assert calls < 3 * len(out)  # was ~len(out)**2 / 6


def test_a_reply_that_only_repeats_the_question_sends_nothing() -> None:
    """Replies seen in the chat bench: the question (and the reminder) copied back."""
    for question, reply in (
        ("今天好累啊，安慰我一下", "今天好累啊，安慰我一下。"),
        ("晚饭吃什么好呢？\n（请用简体中文回答）", "晚饭吃什么好呢？（请用简体中文回答）"),
    ):
        text, reason, _ = run(reply, user_text=question)
        assert (text, reason) == ("", "parrot")


def test_a_copied_question_before_the_answer_is_dropped() -> None:
    text, reason, _ = run("晚饭吃什么好呢？我建议吃番茄炒蛋。", user_text="晚饭吃什么好呢？")
    assert (text, reason) == ("我建议吃番茄炒蛋。", None)
    guard = ReplyGuard(user_text="Any tips for sleeping better?")
    out = guard.push("Any tips for sleeping better? ") + guard.push("Go to bed early.")
    assert out + guard.finish() == "Go to bed early." == guard.text


def test_answers_that_start_like_the_question_pass() -> None:
    text, reason, _ = run("今天天气晴朗。", user_text="今天天气怎么样")
    assert (text, reason) == ("今天天气晴朗。", None)
    text, reason, _ = run("今天好累", user_text="今天好累啊，安慰我一下")  # a prefix only
    assert (text, reason) == ("今天好累", None)
    text, reason, _ = run("你好！有什么可以帮你？", user_text="你好")  # too short to judge
    assert (text, reason) == ("你好！有什么可以帮你？", None)
    # the novel part flows as soon as the reply leaves the question
    guard = ReplyGuard(user_text="今天天气怎么样")
    assert guard.push("今天") == "" and guard.push("下雨") == "今天下雨"


def test_a_long_copy_of_the_question_stops_the_reply_at_parrot_stop_chars() -> None:
    statement = "你好，今天北京天气晴朗，最高气温二十五度。"
    guard = ReplyGuard(user_text=statement, parrot_stop_chars=8)
    out = [guard.push(p) for p in ("你好，", "今天北京", "天气晴朗", "，最高")]
    assert out == ["", "", "", ""] and guard.stop_reason == "parrot"
    assert guard.finish() == "" and guard.text == ""
    # a short copy the answer leaves early is dropped as before
    guard = ReplyGuard(user_text=statement, parrot_stop_chars=8)
    assert guard.push("你好，") + guard.push("有什么可以帮你？") == "你好，有什么可以帮你？"
    assert guard.stop_reason is None


def test_a_near_copy_of_the_question_is_a_parrot_too() -> None:
    """Firmware emulator, 2026-12-02: whisper heard "行目弄得矮一点。" and the device said
    "行目弄矮一点。" back (one character off, so the exact rule let it through)."""
    text, reason, _ = run("行目弄矮一点。", user_text="行目弄得矮一点。")
    assert (text, reason) == ("", "parrot")
    text, reason, _ = run("屏幕弄得暗一点吧。", user_text="屏幕弄得暗一点")
    assert (text, reason) == ("", "parrot")
    # a near copy before the answer is dropped like an exact one
    text, reason, _ = run("行目弄矮一点。抱歉，我没听懂。", user_text="行目弄得矮一点")
    assert (text, reason) == ("抱歉，我没听懂。", None)


def test_answers_that_restate_the_question_are_not_near_copies() -> None:
    for question, reply in (
        ("今天天气怎么样", "今天天气晴朗，适合出门。"),
        ("帮我设置一个十分钟的计时器", "帮你设置好了一个十分钟的计时器。"),
        ("What is the capital of Australia?", "The capital of Australia is Canberra."),
        ("你好小优", "你好呀！"),  # short: only an exact copy counts
    ):
        text, reason, _ = run(reply, user_text=question)
        assert (text, reason) == (reply, None), question
