"""The chat plugin's texts and text handling, importable without a running NoneBot (the chat
quality benchmark uses the same persona and prompt shape as the bot).

- :data:`DEFAULT_PERSONA`: the QQ system prompt. It asks for the user's language instead of
  forcing Chinese, and for short replies.
- :func:`language_of`: "zh" when the text is mostly hanzi, "en" when mostly Latin letters.
- :func:`with_language_hint`: the user message with a short reply-language reminder appended
  (small models follow the last instruction best; the stored history keeps the bare text).
- :func:`strip_speaker_prefix`: group messages reach the model as ``名字: 内容``, and small
  models imitate that (``阿明: 今天天气晴朗``); the prefix is removed from the reply.
"""

from __future__ import annotations

import re

DEFAULT_PERSONA = (
    "你是小优，QQ 群里友好、简洁的聊天助手。用对方说话的语言回答：对方说中文就用简体中文，"
    "对方说英文就用英文。回答简短自然，一般一到三句话，不要重复自己说过的话。"
    "群消息的格式是“名字: 内容”，回答时不要加名字前缀。"
)
LANGUAGE_HINTS = {
    "zh": "（请用简体中文回答）",
    "en": "(Answer in English.)",
}
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def language_of(text: str) -> str | None:
    """ "zh", "en", or None when the text has neither hanzi nor Latin letters."""
    han = len(_HAN.findall(text))
    latin_words = len(re.findall(r"[A-Za-z]+", text))
    if han == 0 and latin_words == 0:
        return None
    return "zh" if han >= latin_words else "en"


def with_language_hint(text: str, hints: dict[str, str] | None = None) -> str:
    hint = (LANGUAGE_HINTS if hints is None else hints).get(language_of(text) or "")
    return f"{text}\n{hint}" if hint else text


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
