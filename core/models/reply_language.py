"""The language a chat reply should be in, and the system prompt that asks for it.

Small models answer in the language of their system prompt more than in the user's: with the
Chinese persona the 0.5B default answered an English question with a Chinese list, on QQ and on
devices. So a prompt is chosen per message: :func:`system_prompt_for` takes the prompt written
in the language of the new message when one is configured for it, else the default prompt.

- :func:`language_of`: "zh" when the text is mostly hanzi, "en" when mostly Latin words,
  None when it has neither (digits, emoji): then the default prompt is used.

Even so the 0.5B model sometimes opens a reply in the other language ("帮我设置一个十分钟的计时
器…" → "Sure, I can help you with that."). :func:`opening_verdict` judges a reply's opening
against :func:`expected_reply_language` (the question's language, None when the question asks
for another language or a translation), so the reply guard can stop it and the facade generate
it again (``ReplyGuard(reply_language=...)``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

from core.models.hanzi import HAN_CLASS

_HAN = re.compile(f"[{HAN_CLASS}]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_WHOLE_LATIN_WORD = re.compile(r"[A-Za-z]+(?=[^A-Za-z])")  # a streamed word known to be complete
# a question naming a language or asking for a translation: the reply may be in any language
_ASKS_FOR_LANGUAGE = re.compile(
    r"英文|英语|中文|汉语|普通话|日语|日文|韩语|法语|德语|翻译|english|chinese|mandarin|"
    r"japanese|korean|french|german|spanish|translat",
    re.IGNORECASE,
)
WRONG_OPENING_WORDS = 3  # a reply to a Chinese question opening with this many Latin words ...
WRONG_OPENING_HANZI = 4  # ... or to an English one with this many hanzi, before the other script


class Verdict(enum.Enum):
    PENDING = "pending"  # neither script decided yet (digits, emoji, a first Latin word)
    RIGHT = "right"
    WRONG = "wrong"


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


def expected_reply_language(question: str) -> str | None:
    """The language a reply to ``question`` should open in: the question's own, or None (any)
    when it names a language or asks for a translation ("用英语怎么说", "translate …")."""
    if _ASKS_FOR_LANGUAGE.search(question):
        return None
    return language_of(question)


def opening_verdict(expected: str, reply: str) -> Verdict:
    """Whether the opening of a streamed ``reply`` is in the ``expected`` language ("zh", "en"):
    a hanzi decides a Chinese reply, a Latin letter an English one; the other script
    (``WRONG_OPENING_WORDS`` words, ``WRONG_OPENING_HANZI`` hanzi) before it decides WRONG.
    "Python是…", "OK，好的" and "25度" are Chinese replies."""
    han = len(_HAN.findall(reply))
    words = len(_WHOLE_LATIN_WORD.findall(reply))
    if expected == "zh":
        if han:
            return Verdict.RIGHT
        return Verdict.WRONG if words >= WRONG_OPENING_WORDS else Verdict.PENDING
    if expected == "en":
        if _LATIN_WORD.search(reply):  # a first letter: no token held for an English reply
            return Verdict.RIGHT
        return Verdict.WRONG if han >= WRONG_OPENING_HANZI else Verdict.PENDING
    return Verdict.RIGHT
