"""The chat plugin's texts and text handling, importable without a running NoneBot (the chat
quality benchmark uses the same persona and prompt shape as the bot).

- :data:`DEFAULT_PERSONA`: the QQ system prompt (Chinese). It asks for the user's language
  instead of forcing Chinese, and for short replies. :data:`DEFAULT_PERSONAS`: the same persona
  written in English, used for English messages (small models answer in the language of their
  system prompt; :func:`core.models.reply_language.system_prompt_for`).
- :func:`language_of`: "zh" when the text is mostly hanzi, "en" when mostly Latin letters.
- :func:`with_language_hint`: the user message with a short reply-language reminder appended
  (small models follow the last instruction best; the stored history keeps the bare text).
  Only English gets one by default: the 0.5B default copied the Chinese reminder into replies
  ("晚饭吃什么好呢？（请用简体中文回答）"), and the Chinese persona already asks for Chinese.
- :func:`chat_messages`: the prompt of one chat request, as the plugin and the bench build it.
- :func:`strip_speaker_prefix`: when group messages reach the model as ``名字: 内容``
  (``speaker_in_prompt``), small models imitate that (``阿明: 今天天气晴朗``); the prefix is
  removed from the reply. By default the model sees the bare text: with the name prefix the
  0.5B default copied it into most replies and mixed up who is who ("你是谁？" → "老王: 你是李华").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from core.models.llm import ChatMessage
from core.models.reply_language import language_of, system_prompt_for

__all__ = [
    "DEFAULT_PERSONA",
    "DEFAULT_PERSONAS",
    "LANGUAGE_HINTS",
    "chat_messages",
    "language_of",
    "strip_speaker_prefix",
    "with_language_hint",
]

DEFAULT_PERSONA = (
    "你是小优，一个友好、乐于助人的 QQ 群聊助手。认真回答群友的问题，回答简短自然，一到三句话。"
    "用对方的语言回答。"
)
DEFAULT_PERSONAS = {
    "en": (
        "You are Xiaoyou (小优), a friendly and helpful assistant in a QQ group chat. Answer"
        " the question briefly and naturally, in one or two short sentences, in English."
    ),
}
LANGUAGE_HINTS = {
    "en": "(Answer in English.)",
}


def with_language_hint(text: str, hints: dict[str, str] | None = None) -> str:
    hint = (LANGUAGE_HINTS if hints is None else hints).get(language_of(text) or "")
    return f"{text}\n{hint}" if hint else text


def chat_messages(
    persona: str,
    history: Sequence[ChatMessage],
    content: str,
    *,
    personas: Mapping[str, str] | None = None,
    hints: dict[str, str] | None = None,
) -> list[ChatMessage]:
    """System prompt (in the new message's language when ``personas`` has one), the kept
    history, and the new message with its language reminder."""
    system = system_prompt_for(content, persona, DEFAULT_PERSONAS if personas is None else personas)
    return [
        ChatMessage("system", system),
        *history,
        ChatMessage("user", with_language_hint(content, hints)),
    ]


def strip_speaker_prefix(reply: str, names: list[str]) -> str:
    """``reply`` without a leading ``名字:`` for any of ``names`` (repeated prefixes too)."""
    text = reply.lstrip()
    wanted = [n for n in names if n]
    changed = True
    while changed and text:
        changed = False
        for name in wanted:
            match = re.match(rf"{re.escape(name)}\s*[:：]\s*", text)
            if match:
                text = text[match.end() :]
                changed = True
    return text
