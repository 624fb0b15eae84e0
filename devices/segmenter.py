"""Sentence segmentation of streamed LLM text (English and Chinese punctuation) for TTS.

Chinese terminators (。！？；… and the full-width forms) end a sentence at once; ASCII ``.!?;``
end one only when followed by whitespace (so ``3.5`` and ``e.g.x`` stay whole), which means
the last ASCII terminator waits for the next piece or ``flush``. Closing quotes and brackets
stay with their sentence. To speak sooner, the *first* sentence may also be cut at a comma
once it is ``first_soft_chars`` long or holds ``first_soft_hanzi`` Chinese characters ("好的，"
is a clause a Chinese speaker pauses after; a hanzi is a whole syllable), later ones once
``soft_chars`` long or holding ``soft_hanzi`` hanzi, if set, or at a space once it is
``first_max_chars`` long (the
first audio waits for the LLM to finish that piece and for TTS to synthesise all of it, so a
long first sentence would otherwise cost several hundred milliseconds). Pieces without a letter
or digit (emoji, stray punctuation) are merged into the next sentence instead of being spoken
alone.
"""

from __future__ import annotations

from core.models.hanzi import is_han

_CJK_END = set("。！？；…!?")  # '!' and '?' end at once too: never part of a word
_ASCII_END = set(".;")
_SOFT = set(",，、:：")
_CLOSERS = set("\"'”’」』）)]】")
_NEWLINE = "\n"


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


class SentenceSegmenter:
    __slots__ = (
        "_buffer",
        "_emitted",
        "first_max_chars",
        "first_soft_chars",
        "first_soft_hanzi",
        "max_chars",
        "soft_chars",
        "soft_hanzi",
    )

    def __init__(
        self,
        *,
        first_soft_chars: int = 12,
        first_soft_hanzi: int = 2,
        first_max_chars: int = 40,
        max_chars: int = 200,
        soft_chars: int = 0,
        soft_hanzi: int = 0,
    ) -> None:
        self.first_soft_chars = first_soft_chars
        self.first_soft_hanzi = first_soft_hanzi  # 0: Chinese clauses count as characters only
        self.first_max_chars = first_max_chars
        # later sentences are cut at a comma once this long (0: never): their synthesis starts
        # before the LLM finishes the sentence, so a slow LLM leaves shorter silences
        self.soft_chars = soft_chars
        # ... or once they hold this many hanzi (0: never): a Chinese clause of six syllables is
        # already a second of speech, while twenty characters are four
        self.soft_hanzi = soft_hanzi
        self.max_chars = max_chars  # a run-on without punctuation is cut at a space past this
        self._buffer = ""
        self._emitted = 0

    def push(self, piece: str) -> list[str]:
        """Add streamed text; return the sentences completed by it."""
        self._buffer += piece
        out: list[str] = []
        while (cut := self._find_cut()) is not None:
            self._take(cut, out)
        return out

    def flush(self) -> list[str]:
        """End of the stream: whatever remains is the last sentence."""
        out: list[str] = []
        self._take(len(self._buffer), out)
        return out

    def _take(self, cut: int, out: list[str]) -> None:
        sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
        if _speakable(sentence):  # always true for cuts from _find_cut; flush may hold only noise
            out.append(sentence)
            self._emitted += 1

    def _soft_limit(self) -> int:
        if self._emitted == 0:
            return self.first_soft_chars
        return self.soft_chars or self.max_chars + 1

    def _soft_cut_ok(self, text: str, end: int) -> bool:
        if end >= self._soft_limit():
            return True
        hanzi = self.first_soft_hanzi if self._emitted == 0 else self.soft_hanzi
        return hanzi > 0 and sum(1 for ch in text[:end] if is_han(ch)) >= hanzi

    def _find_cut(self, start: int = 0) -> int | None:
        text = self._buffer
        n = len(text)
        for i in range(start, n):
            ch = text[i]
            end: int | None = None
            if ch in _CJK_END or ch == _NEWLINE:
                end = i + 1
            elif ch in _ASCII_END:
                if i + 1 >= n:
                    return None  # wait: might be "3." of "3.5"
                if text[i + 1].isspace() or text[i + 1] in _CLOSERS:
                    end = i + 1
            elif ch in _SOFT and self._soft_cut_ok(text, i + 1):
                if ch in ",:" and (i + 1 >= n or not text[i + 1].isspace()):
                    continue  # "1,000" or "12:30": not a pause
                end = i + 1
            elif ch == " " and (
                i >= self.max_chars or (self._emitted == 0 and i >= self.first_max_chars)
            ):
                end = i + 1
            if end is not None:
                while end < n and text[end] in _CLOSERS:
                    end += 1
                if _speakable(text[:end]):
                    return end
        return None
