"""The chat plugin's texts and text handling, importable without a running NoneBot (the chat
quality benchmark uses the same persona and prompt shape as the bot).

- :data:`DEFAULT_PERSONA`: the QQ system prompt. It asks for the user's language instead of
  forcing Chinese, and for short replies.
- :func:`language_of`: "zh" when the text is mostly hanzi, "en" when mostly Latin letters.
- :func:`with_language_hint`: the user message with a short reply-language reminder appended
  (small models follow the last instruction best; the stored history keeps the bare text).
- :func:`strip_speaker_prefix`: when group messages reach the model as ``名字: 内容``
  (``speaker_in_prompt``), small models imitate that (``阿明: 今天天气晴朗``); the prefix is
  removed from the reply. By default the model sees the bare text: with the name prefix the
  0.5B default copied it into most replies and mixed up who is who ("你是谁？" → "老王: 你是李华").
"""

from __future__ import annotations

import re

DEFAULT_PERSONA = (
    "你是小优，一个友好、乐于助人的 QQ 群聊助手。认真回答群友的问题，回答简短自然，一到三句话。"
    "用对方的语言回答。"
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
