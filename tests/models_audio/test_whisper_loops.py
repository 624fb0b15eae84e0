"""Whisper repetition loops: detection, collapsing, and both decoding paths of WhisperAsr.

A held-out English clip came back from whisper-base three times over (WER 162 %). The fitted
path's old guard (whisper's compression ratio > 2.4) misses a sentence said twice, or a short
one said three times (ratios 1.7-2.3), and the full-window path, where the fitted path's
fallback ends, had no guard of ours at all. Test doubles stand in for the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from faster_whisper.transcribe import get_compression_ratio

from core.models.asr import ZH_PROMPT, AsrSettings
from core.models.whisper import asr as whisper_asr
from core.models.whisper.asr import WhisperAsr
from core.models.whisper.fitted import (
    COMPRESSION_RATIO_LIMIT,
    FittedResult,
    echoes_prompt,
    is_degenerate,
    stopped_early,
    strip_prompt_echo,
    voiced_span_s,
)
from core.models.whisper.loops import collapse_loops, has_loop

SENTENCE = "What is the capital of Australia, and how far is it from Sydney?"
THRICE = f"{SENTENCE} {SENTENCE} {SENTENCE}"
TWICE = f"{SENTENCE} {SENTENCE}"
SHORT_THRICE = "Please set a timer for ten minutes. " * 3


@pytest.mark.parametrize(
    ("looped", "expected"),
    [
        (THRICE, SENTENCE),
        (f"{SENTENCE} {SENTENCE} What is the capital", SENTENCE),  # a cut-off third copy
        ("Set a timer. Set a timer. Set a timer.", "Set a timer."),
        ("请帮我设置计时器。请帮我设置计时器。请帮我设置计时器。", "请帮我设置计时器。"),
        ("He said the the the the the the end.", "He said the end."),
    ],
)
def test_loops_are_found_and_collapsed_to_the_first_copy(looped: str, expected: str) -> None:
    assert has_loop(looped)
    assert collapse_loops(looped) == expected


@pytest.mark.parametrize(
    "speech",
    [
        SENTENCE,
        "very very good",
        "对对对，就是这样。",
        "谢谢谢谢！",
        "一点一点地学。",
        "Hello! Hello! How are you?",
        "你好！今天北京天气晴朗，最高气温二十五度。我已经帮你打开了客厅的灯。",
        "",
    ],
)
def test_ordinary_speech_is_not_a_loop(speech: str) -> None:
    assert not has_loop(speech)
    assert collapse_loops(speech) == speech


@pytest.mark.parametrize("looped", [TWICE, SHORT_THRICE.strip(), "请帮我设置计时器。" * 3])
def test_fitted_guard_catches_what_the_compression_ratio_misses(looped: str) -> None:
    assert get_compression_ratio(looped) <= COMPRESSION_RATIO_LIMIT  # whisper's rule misses it
    assert is_degenerate(looped, tokens=30, max_tokens=72)


def test_fitted_guard_passes_ordinary_output_and_keeps_the_token_cap() -> None:
    assert not is_degenerate(SENTENCE, tokens=15, max_tokens=72)
    assert is_degenerate(SENTENCE, tokens=72, max_tokens=72)  # ran into the token cap


def _speech_like(voiced_s: float, preroll_noise_s: float = 0.3) -> np.ndarray:
    """Room noise, then ``voiced_s`` of 0.3 s tone bursts with short gaps, then silence."""
    rng = np.random.default_rng(0)
    noise = 0.02 * rng.standard_normal(int(16_000 * preroll_noise_s))
    t = np.arange(int(16_000 * voiced_s)) / 16_000
    bursts = 0.5 * np.sin(2 * np.pi * 220 * t) * ((t % 0.4) < 0.3)
    bursts[-160:] = 0.5  # the span ends on a voiced 10 ms
    return np.concatenate([noise, bursts, np.zeros(8_000)]).astype(np.float32)


def test_a_fitted_text_too_short_for_its_speech_counts_as_stopped_early() -> None:
    """Seen in the TTS round trip: "Please set a time for 10 minutes" (8 tokens) for a 3.7 s
    clip of two sentences; whole utterances run at 4-5 tokens a second."""
    audio = _speech_like(3.7)
    assert voiced_span_s(audio) == pytest.approx(3.7, abs=0.05)  # the noise is not speech
    assert stopped_early(8, audio)
    assert not stopped_early(16, audio)  # the whole two sentences
    assert not stopped_early(2, _speech_like(1.5))  # short speech is not judged by its rate
    assert not stopped_early(0, np.zeros(16_000 * 4, np.float32))


def _hum(seconds: float) -> np.ndarray:
    """Some sound (the model doubles do not listen; digital silence is not sent to them)."""
    return (0.01 * np.sin(np.arange(int(16_000 * seconds)) / 5)).astype(np.float32)


@dataclass
class _Segment:
    text: str


@dataclass
class _Info:
    language: str


class _LoopingModel:
    """faster_whisper.WhisperModel.transcribe as the looping decode returned it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.prompts: list[str | None] = []

    def transcribe(self, audio: np.ndarray, **kwargs: object) -> tuple[list[_Segment], _Info]:
        prompt = kwargs.get("initial_prompt")
        self.prompts.append(prompt if isinstance(prompt, str) or prompt is None else "?")
        return [_Segment(" " + self.text)], _Info("en")


def _asr(text: str, **settings: object) -> tuple[WhisperAsr, _LoopingModel]:
    asr = WhisperAsr(AsrSettings.model_validate(settings), cache_dir=Path("unused"))
    model = _LoopingModel(text)
    asr._model = model
    return asr, model


def test_full_window_output_that_loops_is_collapsed() -> None:
    asr, _ = _asr(THRICE, encoder_window="full")
    assert asr.transcribe(_hum(4.0)).text == SENTENCE


def test_fitted_loop_falls_back_and_the_fallback_loop_is_collapsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fitted window looped (now flagged degenerate); the 30 s decode looped as well."""
    flagged: list[bool] = []

    def fitted(*args: object, **kwargs: object) -> FittedResult:
        result = FittedResult(TWICE, "en", is_degenerate(TWICE, 30, 72))
        flagged.append(result.degenerate)
        return result

    monkeypatch.setattr(whisper_asr, "transcribe_fitted", fitted)
    asr, model = _asr(THRICE)
    result = asr.transcribe(_hum(4.0))
    assert flagged == [True] and len(model.prompts) == 1  # the full window ran once
    assert result.text == SENTENCE and result.language == "en"


def test_the_chinese_prompt_steers_the_full_window_once_the_language_is_known() -> None:
    asr, model = _asr("你好", encoder_window="full")
    asr.transcribe(_hum(1.0), language="zh")
    asr.transcribe(_hum(1.0), language="en")
    assert model.prompts == [ZH_PROMPT, None]
    assert AsrSettings().language is None  # auto-detect by default


def test_digital_silence_is_no_speech_without_asking_the_model() -> None:
    """Whisper makes up a sentence for a window of pure zeros (a muted microphone)."""
    asr, model = _asr("这些人都不在这里。")
    assert asr.transcribe(np.zeros(24_000, np.float32), language="zh").text == ""
    assert asr.transcribe(np.zeros(0, np.float32)).text == ""
    assert model.prompts == []


@pytest.mark.parametrize(
    ("heard", "kept"),
    [
        ("以下是普通话的句子，是对智能音箱说的话：屏幕、亮度、音量。", ""),
        ("几点了？计时器、几点。", "几点了？"),
        ("你好。以下是普通话的句子", "你好"),
    ],
)
def test_a_transcript_copying_the_prompt_is_flagged_and_the_copy_dropped(
    heard: str, kept: str
) -> None:
    assert echoes_prompt(heard, ZH_PROMPT)
    assert strip_prompt_echo(heard, ZH_PROMPT) == kept


@pytest.mark.parametrize("speech", ["屏幕亮度调高一点", "把音量调到最大", "开灯，关灯", "几点了？"])
def test_speech_with_the_prompt_words_is_not_an_echo(speech: str) -> None:
    assert not echoes_prompt(speech, ZH_PROMPT)


def test_a_full_window_transcript_copying_the_prompt_keeps_only_the_speech() -> None:
    asr, _ = _asr("你好。以下是普通话的句子，是对智能音箱说的话", encoder_window="full")
    assert asr.transcribe(_hum(1.0), language="zh").text == "你好"
