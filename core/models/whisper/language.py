"""Which language to decode an utterance in, from whisper's language probabilities.

Whisper chooses among its 99 languages, and on a second of speech it is often wrong: a
Mandarin "关灯" (0.4 s voiced) comes out as Spanish or Vietnamese ("guantón", "quen thương"),
an English "Next song" as Korean. The service only serves a few languages (its voices and
persona: ``asr.languages``, Mandarin and English by default), so detection picks among
those. When even they are close (the likeliest holds less than ``CLEAR_SHARE`` of their
summed probability: "关灯" is zh 0.03 against en 0.03), the caller decodes both and keeps the
transcript whisper is surer of (the higher average log-probability).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

CLEAR_SHARE = 0.8


def candidate_languages(probs: Iterable[tuple[str, float]], served: Sequence[str]) -> list[str]:
    """The language to decode in, or the two to try when detection cannot tell them apart.
    ``probs``: (code, probability), likeliest first, as whisper's detection returns them;
    ``served``: the languages to choose among, empty for any. Empty ``probs`` (nothing was
    detected): the first served language, or none."""
    ranked = sorted(probs, key=lambda p: p[1], reverse=True)
    kept = [p for p in ranked if p[0] in set(served)]
    if not kept:  # any language, or a model that knows none of them: whisper's own choice
        return [ranked[0][0]] if ranked else list(served[:1])
    if len(kept) < 2:
        return [kept[0][0]]
    (first, p_first), (second, p_second) = kept[0], kept[1]
    total = p_first + p_second
    if total > 0 and p_first / total >= CLEAR_SHARE:
        return [first]
    return [first, second]
