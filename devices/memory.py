"""Bounded per-device conversation memory: the last exchanges, capped by count and characters."""

from __future__ import annotations

from collections import deque

from core.models.llm import ChatMessage
from core.settings import DEVICE_SYSTEM_PROMPT

DEFAULT_SYSTEM_PROMPT = DEVICE_SYSTEM_PROMPT  # Chinese; configurable as devices.system_prompt


class ConversationMemory:
    """Keeps whole user/assistant exchanges, dropping the oldest beyond either bound."""

    __slots__ = ("_exchanges", "max_chars", "system_prompt")

    def __init__(
        self,
        *,
        max_exchanges: int = 6,
        max_chars: int = 3000,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        self.max_chars = max_chars
        self.system_prompt = system_prompt
        self._exchanges: deque[tuple[str, str]] = deque(maxlen=max_exchanges)

    def messages_for(self, user_text: str) -> list[ChatMessage]:
        """The prompt for a new user utterance: system, kept history, the new user message."""
        messages = [ChatMessage("system", self.system_prompt)]
        for user, assistant in self._exchanges:
            messages.append(ChatMessage("user", user))
            messages.append(ChatMessage("assistant", assistant))
        messages.append(ChatMessage("user", user_text))
        return messages

    def add(self, user_text: str, assistant_text: str) -> None:
        """Record an exchange (an interrupted reply is recorded as far as it was generated)."""
        if not user_text.strip() or not assistant_text.strip():
            return
        self._exchanges.append((user_text.strip(), assistant_text.strip()))
        while len(self._exchanges) > 1 and self.chars > self.max_chars:
            self._exchanges.popleft()

    @property
    def chars(self) -> int:
        return sum(len(u) + len(a) for u, a in self._exchanges)

    def __len__(self) -> int:
        return len(self._exchanges)

    def clear(self) -> None:
        self._exchanges.clear()
