"""piper (embedded voice) and espeak-ng: real synthesis, sample rates, cancel, load errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import JobCancelled, ModelLoadError
from core.models.audio import resample
from core.models.base import never_cancelled
from core.models.tts import PcmChunk, Tts, TtsSettings, create_tts, split_sentences
from core.models.whisper.asr import WhisperAsr
from tests.models_audio.wer import word_error_rate

pytestmark = pytest.mark.slow

ENGLISH = "Please set a timer for ten minutes. Then remind me to check the oven!"
CHINESE = "你好！今天北京天气晴朗。"


def _collect(tts: Tts, text: str, rate_hz: int) -> list[PcmChunk]:
    return list(tts.synthesize(text, sample_rate_hz=rate_hz, check=never_cancelled))


@pytest.fixture(scope="module")
def espeak() -> Tts:
    tts = create_tts(TtsSettings(provider="espeak"))
    try:
        tts.load()
    except ModelLoadError as e:
        pytest.skip(f"espeak-ng not usable here: {e}")
    return tts


@pytest.mark.parametrize("rate_hz", [16000, 24000])
def test_piper_duration_fits_the_text(piper: Tts, rate_hz: int) -> None:
    chunks = _collect(piper, ENGLISH, rate_hz)
    assert len(chunks) >= 2  # one chunk per sentence, streamed
    assert all(c.sample_rate_hz == rate_hz and c.samples.dtype == np.int16 for c in chunks)
    audio = np.concatenate([c.samples for c in chunks])
    seconds_per_char = len(audio) / rate_hz / len(ENGLISH)
    assert 0.04 <= seconds_per_char <= 0.2
    assert np.abs(audio).max() > 10_000  # not silence


def test_piper_speech_is_intelligible_to_whisper(piper: Tts, whisper: WhisperAsr) -> None:
    audio = np.concatenate([c.samples for c in _collect(piper, ENGLISH, 24000)])
    text = whisper.transcribe(resample(audio, 24000, 16000)).text
    assert word_error_rate(ENGLISH, text) <= 0.15, text


def test_espeak_speaks_chinese(espeak: Tts) -> None:
    chunks = _collect(espeak, CHINESE, 16000)
    assert len(chunks) >= 2
    audio = np.concatenate([c.samples for c in chunks])
    assert all(c.sample_rate_hz == 16000 for c in chunks)
    assert 0.5 <= len(audio) / 16000 <= 8.0
    assert np.abs(audio).max() > 5_000


@pytest.mark.parametrize("provider", ["piper", "espeak"])
def test_cancel_stops_synthesis(provider: str, request: pytest.FixtureRequest) -> None:
    tts = request.getfixturevalue(provider)
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise JobCancelled("cancelled by test")

    text = ENGLISH if provider == "piper" else "一。二。三。四。五。"
    got: list[PcmChunk] = []
    with pytest.raises(JobCancelled):
        for chunk in tts.synthesize(text, sample_rate_hz=16000, check=check):
            got.append(chunk)
    assert len(got) == 1  # the first sentence, then the next check() stopped it
    assert calls == 2


def test_cancel_before_start_produces_nothing(piper: Tts) -> None:
    def check() -> None:
        raise JobCancelled("cancelled before start")

    gen = piper.synthesize(ENGLISH, sample_rate_hz=16000, check=check)
    with pytest.raises(JobCancelled):
        next(gen)


def test_bad_voice_gives_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="missing"):
        create_tts(TtsSettings(voice=tmp_path / "nope.onnx")).load()
    voice = tmp_path / "bad.onnx"
    voice.write_bytes(b"garbage")
    Path(f"{voice}.json").write_text('{"audio": {"sample_rate": 22050}}')
    with pytest.raises(ModelLoadError):
        create_tts(TtsSettings(voice=voice)).load()
    with pytest.raises(ModelLoadError):
        create_tts(TtsSettings(provider="espeak", espeak_binary="no-such-espeak")).load()
    with pytest.raises(ModelLoadError, match="no voice"):
        create_tts(TtsSettings(provider="espeak", espeak_voice="xx-nonexistent")).load()
    with pytest.raises(ModelLoadError):
        next(
            create_tts(TtsSettings()).synthesize("hi", sample_rate_hz=16000, check=never_cancelled)
        )


def test_sentence_splitting() -> None:
    assert split_sentences("你好！今天，晴。\n\nOK? It is 3.5 degrees.") == [
        "你好！",
        "今天，晴。",
        "OK?",
        "It is 3.5 degrees.",
    ]
