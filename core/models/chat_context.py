"""Fitting a chat prompt into the model's context window, oldest exchanges dropped first.

A prompt is ``[system?] + history + [new user message]``. The reply needs room too, so the
prompt may use ``n_ctx - reply_tokens - PRIMER_TOKENS`` tokens, where the reply budget is the
requested ``max_tokens`` capped at half the context. If the prompt is longer, whole exchanges
(a user message and the assistant reply after it) are dropped from the front of the history
until it fits; the system message and the new user message always stay. If those two alone
are still too long, the new message keeps its end (where a question usually is) and the
system message its start.

Token counts come from the backend (:meth:`core.models.llm.Llm.count_tokens`: the model's own
tokenizer for llama.cpp, a conservative estimate otherwise), plus ``MESSAGE_OVERHEAD_TOKENS``
for the chat template's markers around each message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.models.llm import ChatMessage

MESSAGE_OVERHEAD_TOKENS = 8  # ChatML "<|im_start|>role\n…<|im_end|>\n" is 5; other templates more
PRIMER_TOKENS = 8  # the template's "<|im_start|>assistant\n" that starts the reply
_ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    messages: list[ChatMessage]
    reply_tokens: int  # max_tokens for the request (never more than the room left)
    prompt_tokens: int  # the counted size of ``messages``
    dropped: int  # history messages left out


def fit_prompt(
    messages: Sequence[ChatMessage],
    *,
    n_ctx: int,
    max_tokens: int,
    count: Callable[[str], int],
) -> FittedPrompt:
    """``messages`` trimmed to fit ``n_ctx`` together with the reply (see the module doc)."""
    reply = max(1, min(max_tokens, n_ctx // 2))
    budget = n_ctx - reply - PRIMER_TOKENS
    items = list(messages)
    system = items.pop(0) if items and items[0].role == "system" else None
    last = items.pop() if items else None
    history = items

    def cost(message: ChatMessage) -> int:
        return count(message.content) + MESSAGE_OVERHEAD_TOKENS

    costs = [cost(m) for m in history]
    fixed = (cost(system) if system else 0) + (cost(last) if last else 0)
    total = fixed + sum(costs)
    start = 0
    while total > budget and start < len(history):
        step = 2 if _is_exchange(history, start) else 1
        total -= sum(costs[start : start + step])
        start += step
    kept = history[start:]
    if total > budget and last is not None:
        room = budget - (cost(system) if system else 0)
        if system is not None and room < budget // 2:  # a huge system prompt: halve it
            system = _shorten(system, budget // 2, count, keep="start")
            room = budget - cost(system)
        last = _shorten(last, room, count, keep="end")
    out = [m for m in (system, *kept, last) if m is not None]
    prompt_tokens = sum(cost(m) for m in out)
    return FittedPrompt(
        out, max(1, min(reply, n_ctx - prompt_tokens - PRIMER_TOKENS)), prompt_tokens, start
    )


def _is_exchange(history: Sequence[ChatMessage], index: int) -> bool:
    return (
        index + 1 < len(history)
        and history[index].role == "user"
        and history[index + 1].role == "assistant"
    )


def _shorten(
    message: ChatMessage, tokens: int, count: Callable[[str], int], *, keep: str
) -> ChatMessage:
    """``message`` cut (at its start or end) to at most ``tokens`` including the overhead."""
    limit = max(1, tokens - MESSAGE_OVERHEAD_TOKENS)
    text = message.content
    low, high = 0, len(text)  # the longest kept length whose count fits
    while low < high:
        mid = (low + high + 1) // 2
        piece = text[-mid:] if keep == "end" else text[:mid]
        if count(piece) + 1 <= limit:
            low = mid
        else:
            high = mid - 1
    if low >= len(text):
        return message
    kept = _ELLIPSIS + text[len(text) - low :] if keep == "end" else text[:low] + _ELLIPSIS
    return ChatMessage(message.role, kept)
