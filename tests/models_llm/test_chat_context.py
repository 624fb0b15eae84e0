"""fit_prompt: a prompt never exceeds the context; the oldest exchanges go first."""

from __future__ import annotations

from core.models.chat_context import MESSAGE_OVERHEAD_TOKENS, PRIMER_TOKENS, fit_prompt
from core.models.llm import ChatMessage, estimate_tokens


def conversation(exchanges: int, chars: int = 60) -> list[ChatMessage]:
    messages = [ChatMessage("system", "你是小优。")]
    for i in range(exchanges):
        messages.append(ChatMessage("user", f"问题{i}：" + "好" * chars))
        messages.append(ChatMessage("assistant", f"回答{i}：" + "嗯" * chars))
    messages.append(ChatMessage("user", "最后一个问题"))
    return messages


def size(messages: list[ChatMessage]) -> int:
    return sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def test_short_prompt_is_unchanged() -> None:
    messages = conversation(2)
    fitted = fit_prompt(messages, n_ctx=2048, max_tokens=256, count=estimate_tokens)
    assert fitted.messages == messages and fitted.dropped == 0 and fitted.reply_tokens == 256


def test_oldest_exchanges_are_dropped_whole_until_it_fits() -> None:
    messages = conversation(50)
    fitted = fit_prompt(messages, n_ctx=1024, max_tokens=256, count=estimate_tokens)
    kept = fitted.messages
    assert kept[0] == messages[0] and kept[-1] == messages[-1]
    assert kept[1].role == "user" and kept[-2] == messages[-2]  # whole exchanges, newest kept
    assert fitted.dropped % 2 == 0 and fitted.dropped > 0
    assert size(kept) + fitted.reply_tokens + PRIMER_TOKENS <= 1024
    assert fitted.prompt_tokens == size(kept)
    # one more exchange would not have fitted
    assert size([messages[0], *messages[fitted.dropped - 1 :]]) + 256 + PRIMER_TOKENS > 1024


def test_reply_budget_is_capped_at_half_the_context() -> None:
    fitted = fit_prompt(conversation(50), n_ctx=512, max_tokens=512, count=estimate_tokens)
    assert fitted.reply_tokens <= 256
    assert fitted.prompt_tokens + fitted.reply_tokens + PRIMER_TOKENS <= 512


def test_a_huge_new_message_keeps_its_end() -> None:
    messages = [
        ChatMessage("system", "你是小优。"),
        ChatMessage("user", "废话" * 3000 + "问题在最后？"),
    ]
    fitted = fit_prompt(messages, n_ctx=512, max_tokens=128, count=estimate_tokens)
    last = fitted.messages[-1].content
    assert last.startswith("…") and last.endswith("问题在最后？")
    assert fitted.prompt_tokens + fitted.reply_tokens + PRIMER_TOKENS <= 512
    assert fitted.messages[0].content == "你是小优。"


def test_history_without_system_message() -> None:
    messages = conversation(20)[1:]
    fitted = fit_prompt(messages, n_ctx=600, max_tokens=100, count=estimate_tokens)
    assert fitted.messages[-1] == messages[-1] and fitted.messages[0].role == "user"
    assert fitted.prompt_tokens + fitted.reply_tokens + PRIMER_TOKENS <= 600
