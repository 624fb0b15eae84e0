"""The language a chat reply should be in, and the system prompt that asks for it.

Small models answer in the language of their system prompt more than in the user's: with the
Chinese persona the 0.5B default answered an English question with a Chinese list, on QQ and on
devices. So a prompt is chosen per message: :func:`system_prompt_for` takes the prompt written
in the language of the new message when one is configured for it, else the default prompt.

- :func:`language_of`: "zh" when the text is mostly hanzi, "en" when mostly Latin words,
  None when it has neither (digits, emoji): then the default prompt is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def language_of(text: str) -> str | None:
    """ "zh", "en", or None when the text has neither hanzi nor Latin letters."""
    han = len(_HAN.findall(text))
    latin_words = len(_LATIN_WORD.findall(text))
    if han == 0 and latin_words == 0:
        return None
    return "zh" if han >= latin_words else "en"


def system_prompt_for(text: str, default: str, by_language: Mapping[str, str]) -> str:
    """The system prompt for a new message ``text``: ``by_language[language_of(text)]`` when
    configured (and not empty), else ``default``."""
    return by_language.get(language_of(text) or "") or default
