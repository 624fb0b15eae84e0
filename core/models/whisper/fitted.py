"""Whisper decoding with the encoder window fitted to the utterance (whisper.cpp's audio_ctx).

Whisper pads every input to 30 s and the encoder pays for all of it: on two CPU cores the
whisper-base encoder takes ~1.1 s for a 3 s utterance, most of it on silence. CTranslate2
accepts shorter mel inputs, so this path encodes only the utterance plus ``pad_ms`` of
silence (~0.1 s for the same utterance), detects the language from that same encoder output
(faster-whisper's own path encodes a second time to detect it) among the served languages,
and decodes greedily without timestamps, in both of the two likeliest when detection cannot
tell them apart (:mod:`core.models.whisper.language` says which to keep).

Without the 30 s context whisper can loop or hallucinate, so the result is checked the way
whisper checks its own fallbacks: a text that compresses too well (repetition), that repeats a
phrase (:func:`core.models.whisper.loops.has_loop`: a sentence said two or three times passes
the compression check), or that ran into the token cap, is reported as degenerate and the
caller decodes again with the standard 30 s window. So is a text too short for the speech it
transcribes (fewer than ``MIN_TOKENS_PER_VOICED_S`` tokens per second from the first to the
last voiced 10 ms, for two seconds or more of it): the short window sometimes ends after the
first of two sentences ("Please set a time for 10 minutes" for a 3.7 s clip, 8 tokens; whole
utterances run at 4–5 tokens a second in English and Mandarin), and so is a text that copies
the prompt (:func:`echoes_prompt`: "你好" heard as the prompt's word list) or that holds a
broken character (U+FFFD: the decode ended inside a hanzi's byte tokens). Short speech (under
``MIN_VOICED_S``) that loops is the exception: the window's real silence after a short command
makes whisper say it again and again, and its first copy is kept instead. Whisper's no-speech
rule (no-speech probability high and average log-probability low) returns an empty text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.models.audio import voiced_frames
from core.models.whisper.language import candidate_languages, surer
from core.models.whisper.loops import collapse_loops, has_loop

FRAMES_PER_S = 100  # whisper mel frames: 10 ms hop
FULL_WINDOW_FRAMES = 3000
COMPRESSION_RATIO_LIMIT = 2.4  # whisper's threshold for repetitive output
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
TOKENS_PER_S = 12  # generous: speech runs at ~3-5 tokens per second in English and Chinese
MIN_TOKENS = 24
MIN_TOKENS_PER_VOICED_S = 2.5  # below: stopped early (whole utterances 4-5, slow speech ~3)
MIN_VOICED_S = 2.0  # shorter speech is not judged by its token rate
BROKEN_CHAR = "\ufffd"  # the decode stopped inside a character's byte tokens
ECHO_CHARS = 8  # this much of the prompt copied into a transcript: the prompt, not speech
ECHO_CHARS_WITH_SEPARATOR = 5


@dataclass(frozen=True, slots=True)
class FittedResult:
    text: str
    language: str
    degenerate: bool  # repetitive or cut at the token cap: decode again with the full window


def fits(num_samples: int, sample_rate_hz: int, pad_ms: int) -> bool:
    """Whether the utterance plus padding is shorter than the standard 30 s window."""
    frames = num_samples * FRAMES_PER_S // sample_rate_hz + pad_ms * FRAMES_PER_S // 1000
    return frames < FULL_WINDOW_FRAMES


def transcribe_fitted(
    model: Any,
    audio: np.ndarray,
    *,
    language: str | None,
    pad_ms: int,
    beam_size: int,
    prompts: Mapping[str, str],
    languages: Sequence[str] = (),
) -> FittedResult:
    """``model``: a loaded ``faster_whisper.WhisperModel``; ``audio``: float32 mono 16 kHz;
    ``prompts``: previous-text prompt per language (steers script and punctuation);
    ``languages``: what detection chooses among (:mod:`core.models.whisper.language`)."""
    import ctranslate2

    # the padding is silence run through the feature extractor, as in whisper's own 30 s
    # window: zeros in the normalised log-mel are a loud hiss (log10 power -4), which turned
    # short commands with little silence after them into one wrong character ('关灯' → 'gun')
    silence = np.zeros(pad_ms * 16_000 // 1000, dtype=np.float32)
    features = model.feature_extractor(np.concatenate([audio, silence]))  # (n_mels, frames)
    frames = min(FULL_WINDOW_FRAMES, features.shape[-1])
    frames -= frames % 2  # the encoder halves the length with a stride-2 convolution
    window = np.ascontiguousarray(features[np.newaxis, :, :frames], dtype=np.float32)
    encoded = model.model.encode(
        ctranslate2.StorageView.from_array(window), to_cpu=model.model.device == "cpu"
    )
    max_new = MIN_TOKENS + TOKENS_PER_S * len(audio) // 16_000
    if not model.model.is_multilingual:
        candidates = ["en"]
    elif language is None:
        detected = model.model.detect_language(encoded)[0]  # ("<|en|>", p), likeliest first
        probs = [(token[2:-2], p) for token, p in detected]
        candidates = candidate_languages(probs, languages)
    else:
        candidates = [language]
    decodes = [
        _decode(model, encoded, lang, prompts.get(lang), max_new, beam_size) for lang in candidates
    ]
    best = surer(decodes)
    language, text, tokens, previous = best.language, best.text, best.tokens, best.prompt
    avg_logprob = best.avg_logprob
    if best.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOGPROB_FLOOR:
        return FittedResult("", language, degenerate=False)
    if has_loop(text) and voiced_span_s(audio) < MIN_VOICED_S:
        # a short command followed by silence is often said over and over to the token cap
        # ('关灯、关灯、关灯…'): its first copy is what was said, the 30 s window would take
        # ~0.8 s more to say the same
        first = collapse_loops(text.replace(BROKEN_CHAR, "")).strip("、，, ")
        if first and not has_loop(first):
            return FittedResult(
                first, language, degenerate=bool(previous and echoes_prompt(first, previous))
            )
    degenerate = (
        is_degenerate(text, tokens, max_new)
        or stopped_early(tokens, audio)
        or bool(previous and echoes_prompt(text, previous))
        or BROKEN_CHAR in text
    )
    return FittedResult(text, language, degenerate)


@dataclass(frozen=True, slots=True)
class _Decode:
    language: str
    prompt: str | None  # the previous-text prompt it was decoded with
    text: str
    tokens: int
    avg_logprob: float
    no_speech_prob: float


def _decode(
    model: Any, encoded: Any, language: str, previous: str | None, max_new: int, beam_size: int
) -> _Decode:
    """Greedy (or beam) decoding of the encoded window in ``language``, without timestamps."""
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
    )
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    if previous:
        prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + previous.strip()), *prompt]
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=beam_size,
        max_length=len(prompt) + max_new,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, (-1,)),
    )[0]
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    return _Decode(
        language=language,
        prompt=previous,
        text=tokenizer.decode(tokens).strip(),
        tokens=len(tokens),
        avg_logprob=result.scores[0] if result.scores else 0.0,
        no_speech_prob=result.no_speech_prob,
    )


def echoes_prompt(text: str, prompt: str) -> bool:
    """Whether ``text`` copies a stretch of the prompt: eight characters of it, or five with
    one of its separators (a word list's '计时器、几点' is no one's speech; '屏幕亮度' may be)."""
    for size in (ECHO_CHARS_WITH_SEPARATOR, ECHO_CHARS):
        for start in range(len(text) - size + 1):
            part = text[start : start + size]
            if part in prompt and (size == ECHO_CHARS or any(c in part for c in "、：，。")):
                return True
    return False


def strip_prompt_echo(text: str, prompt: str) -> str:
    """``text`` without the longest stretches it copies from the prompt (see echoes_prompt)."""
    while echoes_prompt(text, prompt):
        best = max(
            (text[i:j] for i in range(len(text)) for j in range(i + 1, len(text) + 1)),
            key=lambda part: len(part) if part in prompt else 0,
        )
        text = text.replace(best, "", 1)
    return text.strip("，、：。 ")


def stopped_early(tokens: int, audio: np.ndarray, sample_rate_hz: int = 16_000) -> bool:
    """Too few tokens for the voiced span of ``audio`` (see the module doc)."""
    voiced_s = voiced_span_s(audio, sample_rate_hz)
    return voiced_s >= MIN_VOICED_S and tokens < MIN_TOKENS_PER_VOICED_S * voiced_s


def voiced_span_s(audio: np.ndarray, sample_rate_hz: int = 16_000) -> float:
    """Seconds from the first to the last 10 ms louder than 10 % of the loudest 10 ms (room
    noise in a device's pre-roll stays below that)."""
    voiced = voiced_frames(audio, sample_rate_hz, 0.1)
    if voiced.size == 0:
        return 0.0
    return (int(voiced[-1]) - int(voiced[0]) + 1) * (sample_rate_hz // 100) / sample_rate_hz


def is_degenerate(text: str, tokens: int, max_tokens: int) -> bool:
    """Cut at the token cap, too compressible (whisper's own rule) or a repetition loop."""
    from faster_whisper.transcribe import get_compression_ratio

    if tokens >= max_tokens:
        return True
    return bool(text) and (get_compression_ratio(text) > COMPRESSION_RATIO_LIMIT or has_loop(text))
