"""A greedy llama.cpp generation to its end: the reference the hand-over tests compare with."""

from __future__ import annotations

from core.models.base import never_cancelled
from core.models.llamacpp.llm import LlamaCppLlm
from core.models.llm import ChatMessage


def greedy(llm: LlamaCppLlm, messages: list[ChatMessage], tokens: int = 32) -> str:
    return "".join(
        llm.stream_chat(messages, max_tokens=tokens, temperature=0.0, check=never_cancelled)
    )
