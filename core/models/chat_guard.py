"""Guards on a streamed chat reply: repetition loops, system-prompt echoes, sentence bounds.

Small models loop ("I'm all ears! I'm all ears! …"), repeat a sentence, or recite their
system prompt. :class:`ReplyGuard` sits between the model's stream and the consumer: text
is passed on as soon as it cannot be part of such a problem, and the reply *ends* (the caller
stops the model) when one is found, without sending the offending part:

- **loop**: the text ends in a unit repeated back to back: a unit of ``LONG_UNIT_CHARS`` or
  more twice, a shorter one at least three times and ``LOOP_MIN_CHARS`` in all (so "哈哈哈" and
  "好的好的" stay). The first copy is kept, the repeats are dropped.
- **repeated run**: a stretch of ``REPEAT_RUN_CHARS`` or more that already appeared earlier in
  the reply, not back to back (a recited paragraph).
- **repeated sentence**: a sentence (up to 。！？!?…, a line end, or ". ") equal to an earlier
  one after dropping spaces, punctuation and case. Sentences of one character repeat once.
- **echo**: a run copied from the system prompt (ignoring spaces, punctuation and case) of
  ``ECHO_CJK_CHARS`` characters for a mostly Chinese prompt, ``ECHO_CHARS`` otherwise (the
  whole prompt if it is shorter): a reply may say who it is ("我是小优，一个群聊助手"), not
  recite its instructions. The reply is cut where the copy began.
- **sentence bound** (``max_sentences``): the reply ends after that many sentences.
- **parrot** (``user_text``): a reply that opens by copying the user's message (of
  ``PARROT_MIN_CHARS`` or more, ignoring spaces, punctuation and case; its first line, or the
  whole message with a reminder line the model copied too; a near copy, a character or two
  off, counts too: :mod:`core.models.near_copy`) is held while it could be such a
  copy; when it goes on with an answer the copy is dropped, and a reply that is nothing but
  the copy ends with ``stop_reason`` "parrot" and nothing sent (the facade generates once more).
  With ``parrot_stop_chars`` a copy that reaches that many characters ends the reply at once
  with "parrot" instead of being held to its end (a 35-character statement copied back costs
  the listener a second of silence before the answer; a fresh generation costs less).
- **language** (``reply_language``): a reply opening in the other script than the question's
  language (:func:`core.models.reply_language.opening_verdict`) ends with ``stop_reason``
  "language" and nothing sent (the facade generates once more); the opening is held only while
  undecided (a Chinese reply's first hanzi, an English reply's first letter decide it).

Inside a Markdown code fence only the loop rule applies, and a long unit needs three copies
(code repeats lines legitimately).
Text that might still turn out to be a repetition or an echo (a tail that repeats earlier
text, a sentence that so far begins like an earlier one, a tail that continues a copy of the
prompt) is held back until it either diverges (then it is passed on) or is confirmed (then it
is dropped); novel text flows at once, so a voice reply's first words are not delayed. When
the reply is cut, it is also trimmed back to the last sentence or clause boundary, so it
never ends in a fragment of the dropped part.
"""

from __future__ import annotations

import bisect
import re
import unicodedata

from core.models.hanzi import is_han
from core.models.near_copy import copied_prefix, is_copy, may_become_copy
from core.models.reply_language import Verdict, opening_verdict

LONG_UNIT_CHARS = 12  # a unit this long repeated twice in a row is a loop
LOOP_MIN_CHARS = 16  # a short unit is a loop at three repeats covering this many characters
MAX_UNIT_CHARS = 64  # longest unit the loop rule looks for (longer: the repeated-run rule)
REPEAT_RUN_CHARS = 32  # a verbatim repeat of this many characters anywhere earlier
HOLD_MIN_CHARS = 3  # a tail repeating earlier text is held back from this length on
ECHO_CHARS = 40  # system-prompt characters in a row (spaces dropped: ~7 English words) ...
ECHO_CJK_CHARS = 20  # ... or hanzi, for a mostly Chinese prompt, that make an echo
PARROT_MIN_CHARS = 4  # a copied user message this long (normalized) is a parrot, not an answer

# sentence ends: Chinese and ASCII terminators, line ends, and "." before a space (not "1. ")
_SENTENCE_END = re.compile(r"(?:[。！？!?…]+|\n+|(?<!\d)\.(?=\s))[\"'”’」』）)\]】]*")
_CLAUSE_END = re.compile(r"[，,、；;：:]\s*")
_FENCE = "```"


def _norm_char(ch: str) -> str:
    """'' for characters the comparisons ignore (space, punctuation), else the folded char."""
    if ch.isspace():
        return ""
    if unicodedata.category(ch)[0] in "PSZ":
        return ""
    return ch.casefold()


def _normalize(text: str) -> str:
    return "".join(_norm_char(ch) for ch in text)


def _loop_enough(unit: str, copies: int, *, in_code: bool) -> bool:
    """Whether ``copies`` back-to-back copies of ``unit`` make a loop (module doc)."""
    size = copies * len(unit)
    if not _normalize(unit):  # punctuation rulers ("-----"): only when very long
        return size >= 2 * LOOP_MIN_CHARS
    if len(unit) < LONG_UNIT_CHARS:
        return copies >= 3 and size >= LOOP_MIN_CHARS
    return copies >= 3 or not in_code  # two equal lines of code happen


class ReplyGuard:
    """Feed streamed pieces to :meth:`push`, pass on what it returns, and stop the model once
    :attr:`stop_reason` is set; at the end of the stream pass on :meth:`finish`."""

    __slots__ = (
        "_dropped",
        "_echo_min",
        "_echo_scanned",
        "_expect",
        "_parrot",
        "_parrot_stop_chars",
        "_prompt",
        "_prompt_pos",
        "_questions",
        "_scan_from",
        "_seen_sentences",
        "_sent",
        "_sentence_start",
        "_sentences",
        "_text",
        "_text_norm",
        "detect_loops",
        "max_sentences",
        "stop_reason",
    )

    def __init__(
        self,
        *,
        system_prompt: str = "",
        max_sentences: int | None = None,
        detect_loops: bool = True,
        user_text: str = "",
        parrot_stop_chars: int = 0,
        reply_language: str | None = None,
    ) -> None:
        """``system_prompt``: what must not be echoed ("": no echo rule); ``detect_loops``
        False keeps only the sentence bound; ``user_text``: the message being answered (the
        parrot rule; "": off); ``parrot_stop_chars``: a copy of it this long (normalized)
        stops the reply with "parrot" (0: the copy is held to its end and dropped);
        ``reply_language``: "zh" or "en", the language the reply must open in (None: off)."""
        self.max_sentences = max_sentences
        self.detect_loops = detect_loops
        self.stop_reason: str | None = None
        self._prompt = _normalize(system_prompt)
        cjk = sum(1 for ch in self._prompt if is_han(ch))
        limit = ECHO_CJK_CHARS if cjk * 2 > len(self._prompt) else ECHO_CHARS
        self._echo_min = min(limit, len(self._prompt))
        self._echo_scanned = 0  # echo windows starting before this were checked
        self._text = ""
        self._text_norm = ""  # normalized text; _prompt_pos[i] = raw index of its i-th char
        self._prompt_pos: list[int] = []
        self._sent = 0  # characters of _text already passed on
        self._sentence_start = 0
        self._scan_from = 0  # sentence ends are searched from here on
        self._sentences = 0
        self._seen_sentences: dict[str, int] = {}
        whole = _normalize(user_text)
        first = _normalize(user_text.strip().split("\n", 1)[0])
        self._questions = [q for q in dict.fromkeys((whole, first)) if len(q) >= PARROT_MIN_CHARS]
        self._parrot = bool(self._questions) and detect_loops  # still deciding
        self._dropped = 0  # raw characters at the start dropped as a copy of the question
        self._parrot_stop_chars = parrot_stop_chars
        self._expect = reply_language if detect_loops else None  # until the opening decides

    @property
    def text(self) -> str:
        """Everything passed on so far."""
        return self._text[self._dropped : self._sent]

    @property
    def generated(self) -> str:
        """Everything the model generated, passed on or not."""
        return self._text

    def push(self, piece: str) -> str:
        """Add generated text; return the part that is safe to pass on now (may be empty)."""
        if self.stop_reason is not None or not piece:
            return ""
        start = len(self._text)
        self._text += piece
        for i, ch in enumerate(piece):
            folded = _norm_char(ch)
            if folded:
                self._text_norm += folded
                self._prompt_pos.extend([start + i] * len(folded))
        if not self.detect_loops:
            out = self._sentences_through(len(self._text), final=False)
            return out if self.stop_reason is not None else out + self._release(len(self._text))
        if self._expect is not None:
            verdict = opening_verdict(self._expect, self._text)
            if verdict is Verdict.WRONG:
                self.stop_reason = "language"
            if verdict is not Verdict.RIGHT:
                return ""  # held while undecided; a wrong opening is never sent
            self._expect = None
        if self._parrot and self._parrot_pending():
            return ""
        for end in range(start + 1, len(self._text) + 1):
            cut = self._loop_start(end)
            if cut is not None:
                return self._stop(cut, "loop")
        cut = self._echo_start()
        if cut is not None:
            return self._stop(cut, "echo")
        out = self._sentences_through(len(self._text), final=False)
        if self.stop_reason is not None:
            return out
        hold = max(self._repeat_hold(), self._sentence_hold(), self._echo_hold())
        return out + self._release(len(self._text) - hold)

    def finish(self) -> str:
        """The stream ended: the rest that is safe to pass on."""
        if self.stop_reason is not None:
            return ""
        if self._parrot and self._text_norm:
            self._parrot = False
            if any(is_copy(self._text_norm, q) for q in self._questions):
                self.stop_reason = "parrot"  # nothing but the question: nothing to send
                return ""
        out = self._sentences_through(len(self._text), final=True)
        if self.stop_reason is not None:
            return out
        return out + self._release(len(self._text))

    # -- rules -----------------------------------------------------------------------------
    def _parrot_pending(self) -> bool:
        """The parrot rule: True while the reply so far could still be a copy of the question
        (hold everything); once it is decided, a completed copy is dropped."""
        norm = self._text_norm
        if any(q.startswith(norm) for q in self._questions):
            if 0 < self._parrot_stop_chars <= len(norm):
                self._parrot = False
                self.stop_reason = "parrot"  # a long copy: generating afresh is sooner
            return True  # (an empty norm too: only spaces and punctuation so far)
        if any(may_become_copy(norm, q) for q in self._questions):
            return True  # a near copy so far ("行目弄矮一点" for "行目弄得矮一点"): decided later
        self._parrot = False
        copied = max((copied_prefix(norm, q) for q in self._questions), default=0)
        if copied:
            end = self._prompt_pos[copied] if copied < len(norm) else len(self._text)
            self._dropped = self._sent = self._sentence_start = end
        return False

    def _in_code(self, index: int) -> bool:
        return self._text.count(_FENCE, 0, index) % 2 == 1

    def _loop_start(self, end: int) -> int | None:
        """Where the repeats of a back-to-back loop ending at ``end`` begin, if there is one."""
        text = self._text
        # a unit of length u repeating back to back has text[end-1-u] == text[end-1]: only
        # those u are tried (ascending, as rfind walks left), found by str.rfind in C
        lowest = max(0, end - 1 - min(MAX_UNIT_CHARS, end // 2))
        j = text.rfind(text[end - 1], lowest, end - 1) if end else -1
        while j >= 0:
            unit_len = end - 1 - j
            j = text.rfind(text[end - 1], lowest, j)
            unit = text[end - unit_len : end]
            if unit.isspace():
                continue
            copies = 1
            while (
                end - (copies + 1) * unit_len >= 0
                and text[end - (copies + 1) * unit_len : end - copies * unit_len] == unit
            ):
                copies += 1
            if copies < 2:
                continue
            if not _loop_enough(unit, copies, in_code=self._in_code(end)):
                continue
            return end - (copies - 1) * unit_len
        if not self._in_code(end):
            run = self._repeated_tail(end)
            if run >= REPEAT_RUN_CHARS:
                return end - run
        return None

    def _repeated_tail(self, end: int) -> int:
        """Length of the longest tail of ``text[:end]`` that also occurs earlier in it."""
        text = self._text
        length = 0
        while length < min(end - 1, 2 * REPEAT_RUN_CHARS):
            probe = text[end - length - 1 : end]
            if text.find(probe, 0, end - 1) < 0:
                break
            length += 1
        return length

    def _repeat_hold(self) -> int:
        run = self._repeated_tail(len(self._text))
        return run if run >= HOLD_MIN_CHARS else 0

    def _sentence_hold(self) -> int:
        """The sentence in progress, while it could still become an earlier one again."""
        begin = self._sentence_start
        # == _normalize(self._text[begin:]), from the incremental copy: no per-character work
        # per push (a long reply without a sentence end would be quadratic on the event loop)
        current = self._text_norm[bisect.bisect_left(self._prompt_pos, begin) :]
        if current and any(seen.startswith(current) for seen in self._seen_sentences):
            return len(self._text) - begin
        return 0

    def _echo_start(self) -> int | None:
        if not self._echo_min:
            return None
        norm, size = self._text_norm, self._echo_min
        for begin in range(self._echo_scanned, len(norm) - size + 1):
            if norm[begin : begin + size] in self._prompt:
                return self._prompt_pos[begin]
        self._echo_scanned = max(self._echo_scanned, len(norm) - size + 1)
        return None

    def _echo_hold(self) -> int:
        """Raw characters at the end that continue a (so far short) copy of the prompt."""
        if not self._echo_min:
            return 0
        norm = self._text_norm
        longest = 0
        for length in range(1, min(len(norm), self._echo_min) + 1):
            if norm[-length:] not in self._prompt:
                break
            longest = length
        if not longest:
            return 0
        return len(self._text) - self._prompt_pos[len(norm) - longest]

    def _sentences_through(self, end: int, *, final: bool) -> str:
        """Check the sentences completed up to ``end`` (the last one too when ``final``)."""
        out = ""
        text = self._text
        while self.stop_reason is None:
            # no sentence end starts before _scan_from (only a "." there may complete once
            # its space arrives): each piece is searched once, not the whole sentence again
            match = _SENTENCE_END.search(text, max(self._sentence_start, self._scan_from), end)
            if match is None or (match.end() == end and not final and text[-1] == "\n"):
                # a newline run may continue in the next piece
                self._scan_from = max(0, end - 1) if match is None else match.start()
                if not final or self._sentence_start >= end:
                    break
                stop = end
            else:
                stop = match.end()
            begin = self._sentence_start
            self._sentence_start = stop
            key = _normalize(text[begin:stop])
            if not key:
                continue
            if self._in_code(begin) or _FENCE in text[begin:stop]:
                continue  # code lines are neither compared nor counted as sentences
            seen = self._seen_sentences.get(key, 0)
            if self.detect_loops and seen and (len(key) > 1 or seen >= 2):
                return out + self._stop(begin, "repeated sentence")
            self._seen_sentences[key] = seen + 1
            self._sentences += 1
            if self.max_sentences is not None and self._sentences >= self.max_sentences:
                out += self._release(stop)
                self.stop_reason = "max sentences"
                return out
        return out

    # -- output ----------------------------------------------------------------------------
    def _release(self, upto: int) -> str:
        if upto <= self._sent:
            return ""
        out = self._text[self._sent : upto]
        self._sent = upto
        return out

    def _stop(self, cut: int, reason: str) -> str:
        """End the reply at ``cut`` (trimmed back to a boundary) and pass on what is left."""
        self.stop_reason = reason
        if cut <= self._sent:
            return ""
        head = self._text[:cut]
        boundary = max(
            (m.end() for m in _SENTENCE_END.finditer(head, self._sent)), default=self._sent
        )
        if boundary == self._sent:
            boundary = max(
                (m.start() + 1 for m in _CLAUSE_END.finditer(head, self._sent)),
                default=self._sent,
            )
        return self._release(boundary).rstrip(" ，,、；;：:")
