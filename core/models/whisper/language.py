"""Which language to decode an utterance in, from whisper's language probabilities.

Whisper chooses among its 99 languages, and on a second of speech it is often wrong: a
Mandarin "关灯" (0.4 s voiced) comes out as Spanish or Vietnamese ("guantón", "quen thương"),
an English "Next song" as Korean. The service only serves a few languages (its voices and
persona: ``asr.languages``, Mandarin and English by default), so when whisper's choice is
not one of those, detection picks among them instead. When they are close (the likelier
holds less than ``CLEAR_SHARE`` of their summed probability: "关灯" is es 0.86, en 0.03, zh
0.03), the caller decodes both and keeps the one whisper is surer of (:func:`surer`). A
served language whisper chose itself is kept as it is: nothing changes where it was right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from core.models.hanzi import is_han

CLEAR_SHARE = 0.8
_NOT_LATIN = re.compile(r"[^\x00-\u024f\s\d\W]")  # a letter of a non-Latin script


class Decode(Protocol):
    """One language's transcript of an utterance, as the comparison needs it."""

    @property
    def language(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def avg_logprob(self) -> float: ...


D = TypeVar("D", bound=Decode)


def in_its_script(language: str, text: str) -> bool:
    """Whether a transcript is written the way its language is: a Mandarin one with at least
    one hanzi (whisper told to write Chinese wrote "ok", "star", "5 5 5": it heard no Chinese),
    an English one in Latin letters (told to write English it wrote "다른", "下下下")."""
    if language == "zh":
        return any(is_han(ch) for ch in text)
    if language == "en":
        return not _NOT_LATIN.search(text)
    return True


def surer(decodes: Sequence[D]) -> D:
    """The decode to keep when detection tried more than one language: one written in its own
    script over one that is not, then the higher average log-probability. (Lowering a loop's
    score was tried: a short Mandarin command said over and over, "关灯、关灯、…", then lost
    to a made-up English word; docs/benchmarks.md.)"""
    return max(decodes, key=lambda d: (in_its_script(d.language, d.text), d.avg_logprob))


def candidate_languages(probs: Iterable[tuple[str, float]], served: Sequence[str]) -> list[str]:
    """The language to decode in, or the two to try when detection cannot tell them apart.
    ``probs``: (code, probability), likeliest first, as whisper's detection returns them;
    ``served``: the languages to choose among, empty for any. Empty ``probs`` (nothing was
    detected): the first served language, or none."""
    ranked = sorted(probs, key=lambda p: p[1], reverse=True)
    kept = [p for p in ranked if p[0] in set(served)]
    if not kept:  # any language, or a model that knows none of them: whisper's own choice
        return [ranked[0][0]] if ranked else list(served[:1])
    if kept[0] == ranked[0] or len(kept) < 2:
        # whisper's own choice is served: trusted, even when close ("静音" through the codec,
        # zh 0.17 against en 0.15, decoded in both came back "Jiayin Jiayin Jiayin")
        return [kept[0][0]]
    (first, p_first), (second, p_second) = kept[0], kept[1]
    total = p_first + p_second
    if total > 0 and p_first / total >= CLEAR_SHARE:
        return [first]
    return [first, second]
