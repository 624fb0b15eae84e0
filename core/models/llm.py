"""Chat language models: messages in, streamed text pieces out, stoppable between tokens."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from core.models.base import CancelCheck, ModelBackend


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


class Llm(ModelBackend):
    @abstractmethod
    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        """Yield text pieces as generated; call ``check()`` before each token."""
