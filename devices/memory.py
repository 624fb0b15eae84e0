"""Bounded per-device conversation memory: the last exchanges, capped by count and characters.

The system prompt of each request is the one written in the language of the new utterance
when ``system_prompts`` has it (English by default), else ``system_prompt`` (Chinese): small
models answer in the language of their system prompt, not the user's
(:func:`core.models.reply_language.system_prompt_for`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from core.models.llm import ChatMessage
from core.models.reply_language import system_prompt_for
from core.settings import DEVICE_SYSTEM_PROMPT, DEVICE_SYSTEM_PROMPTS

DEFAULT_SYSTEM_PROMPT = DEVICE_SYSTEM_PROMPT  # Chinese; configurable as devices.system_prompt


class ConversationMemory:
    """Keeps whole user/assistant exchanges, dropping the oldest beyond either bound."""

    __slots__ = ("_exchanges", "max_chars", "system_prompt", "system_prompts")

    def __init__(
        self,
        *,
        max_exchanges: int = 6,
        max_chars: int = 3000,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        system_prompts: Mapping[str, str] | None = None,
    ) -> None:
        """``system_prompts`` None: the default ones (English); {}: ``system_prompt`` always."""
        self.max_chars = max_chars
        self.system_prompt = system_prompt
        self.system_prompts = dict(
            DEVICE_SYSTEM_PROMPTS if system_prompts is None else system_prompts
        )
        self._exchanges: deque[tuple[str, str]] = deque(maxlen=max_exchanges)

    def messages_for(self, user_text: str) -> list[ChatMessage]:
        """The prompt for a new user utterance: system, kept history, the new user message."""
        system = system_prompt_for(user_text, self.system_prompt, self.system_prompts)
        messages = [ChatMessage("system", system)]
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
