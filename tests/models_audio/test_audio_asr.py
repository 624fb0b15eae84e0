"""Whisper (embedded whisper-base) on the shipped clips; FunASR's load path; settings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydantic
import pytest

from core.errors import ModelLoadError
from core.models.asr import AsrSettings, create_asr
from core.models.funasr.asr import FunAsr, split_tags
from core.models.whisper import asr as whisper_asr
from core.models.whisper.asr import EMBEDDED_DIR_NAME, WhisperAsr, assemble_whisper_base
from core.models.whisper.fitted import FittedResult, fits
from tests.models_audio.conftest import Clip
from tests.models_audio.wer import char_error_rate, normalize_words, word_error_rate

pytestmark = pytest.mark.slow


def test_wer_helpers() -> None:
    assert normalize_words("A high of twenty-five, ten!") == ["a", "high", "of", "25", "10"]
    assert word_error_rate("set a timer", "set the timer") == pytest.approx(1 / 3)
    assert char_error_rate("你好，世界", "你好世界") == 0.0


def test_english_clips_are_transcribed_within_10_percent_wer(
    whisper: WhisperAsr, clips: list[Clip]
) -> None:
    english = [c for c in clips if c.language == "en"]
    assert english
    for clip in english:
        result = whisper.transcribe(clip.float32)
        assert result.language == "en"
        assert result.audio_s == pytest.approx(len(clip.samples) / 16000)
        assert word_error_rate(clip.text, result.text) <= 0.10, (clip.text, result.text)


def test_chinese_clip_is_recognised_as_chinese(whisper: WhisperAsr, clips: list[Clip]) -> None:
    clip = next(c for c in clips if c.language == "zh")
    result = whisper.transcribe(clip.float32)
    assert result.language == "zh"
    # whisper-base on synthetic Mandarin: ~15% CER, digits for number words count as errors
    assert char_error_rate(clip.text, result.text) <= 0.35, result.text


def test_forced_language_is_reported(whisper: WhisperAsr, clips: list[Clip]) -> None:
    clip = next(c for c in clips if c.language == "en")
    assert whisper.transcribe(clip.float32[:16000], language="en").language == "en"


def test_fitted_window_matches_the_full_window(whisper_cache: Path, clips: list[Clip]) -> None:
    full = create_asr(AsrSettings(encoder_window="full"), cache_dir=whisper_cache)
    full.load()
    clip = next(c for c in clips if c.name == "en03")
    fitted = create_asr(AsrSettings(), cache_dir=whisper_cache)
    fitted.load()
    a, b = fitted.transcribe(clip.float32), full.transcribe(clip.float32)
    assert (a.language, b.language) == ("en", "en")
    assert word_error_rate(b.text, a.text) == 0.0, (a.text, b.text)


def test_silence_gives_empty_text_and_long_audio_uses_the_full_window(
    whisper: WhisperAsr,
) -> None:
    assert whisper.transcribe(np.zeros(32_000, np.float32), language="en").text == ""
    assert fits(16_000 * 28, 16_000, 1000) and not fits(16_000 * 29, 16_000, 1000)


def test_repetitive_fitted_output_falls_back_to_the_full_window(
    whisper: WhisperAsr, clips: list[Clip], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_transcribe = whisper._model.transcribe

    def degenerate(*args: object, **kwargs: object) -> FittedResult:
        calls.append("fitted")
        return FittedResult("la la la la la la la la la la la la la", "en", degenerate=True)

    def full_window(*args: object, **kwargs: object) -> object:
        calls.append("full")
        return real_transcribe(*args, **kwargs)

    monkeypatch.setattr(whisper_asr, "transcribe_fitted", degenerate)
    monkeypatch.setattr(whisper._model, "transcribe", full_window)
    clip = next(c for c in clips if c.name == "en03")
    result = whisper.transcribe(clip.float32)
    assert calls == ["fitted", "full"]
    assert word_error_rate(clip.text, result.text) <= 0.10, result.text


def test_embedded_model_is_assembled_once(whisper: WhisperAsr, whisper_cache: Path) -> None:
    folder = whisper_cache / EMBEDDED_DIR_NAME
    model_bin = folder / "model.bin"
    assert model_bin.stat().st_size > 100_000_000
    before = model_bin.stat().st_mtime_ns
    assert assemble_whisper_base(whisper_cache) == folder
    assert model_bin.stat().st_mtime_ns == before
    assert not [p for p in whisper_cache.iterdir() if p.name.startswith(".")]  # no temp left


def test_truncated_embedded_model_is_rebuilt(tmp_path: Path, whisper_cache: Path) -> None:
    folder = tmp_path / EMBEDDED_DIR_NAME
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"half")
    rebuilt = assemble_whisper_base(tmp_path)
    expected = (whisper_cache / EMBEDDED_DIR_NAME / "model.bin").stat().st_size
    assert (rebuilt / "model.bin").stat().st_size == expected


def test_bad_whisper_folders_give_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model\.bin"):
        create_asr(AsrSettings(model_dir=tmp_path / "missing"), cache_dir=tmp_path).load()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.bin").write_bytes(os.urandom(1024))
    (broken / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="cannot load whisper"):
        create_asr(AsrSettings(model_dir=broken), cache_dir=tmp_path).load()
    with pytest.raises(ModelLoadError):
        create_asr(AsrSettings(), cache_dir=tmp_path).transcribe(np.zeros(160, np.float32))


def test_funasr_settings_need_a_folder() -> None:
    with pytest.raises(pydantic.ValidationError, match="model_dir"):
        AsrSettings(provider="funasr")


def test_funasr_missing_or_incomplete_folder(tmp_path: Path) -> None:
    asr = create_asr(
        AsrSettings(provider="funasr", model_dir=tmp_path / "nope"), cache_dir=tmp_path
    )
    assert isinstance(asr, FunAsr)
    with pytest.raises(ModelLoadError, match="does not exist"):
        asr.load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"config\.yaml"):
        FunAsr(AsrSettings(provider="funasr", model_dir=tmp_path / "empty")).load()


def test_sensevoice_tags_are_split_off() -> None:
    assert split_tags("<|zh|><|NEUTRAL|><|Speech|><|withitn|>你好。") == ("你好。", "zh")
    assert split_tags("hello") == ("hello", None)
