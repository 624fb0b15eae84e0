"""Shared fixtures of the audio-model tests: the shipped clips, and each real model loaded once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.models.asr import AsrSettings, create_asr
from core.models.audio import read_wav
from core.models.tts import Tts, TtsSettings, create_tts
from core.models.vad import VadModel, VadSettings, create_vad
from core.models.whisper.asr import WhisperAsr

AUDIO_DIR = Path(__file__).resolve().parents[3] / "shared" / "audio"


@dataclass(frozen=True)
class Clip:
    name: str
    language: str
    text: str
    samples: np.ndarray  # int16 at 16 kHz
    sample_rate_hz: int

    @property
    def float32(self) -> np.ndarray:
        return self.samples.astype(np.float32) / 32768.0


def _load_clips() -> list[Clip]:
    refs = json.loads((AUDIO_DIR / "refs.json").read_text(encoding="utf-8"))
    clips = []
    for wav in sorted(AUDIO_DIR.glob("*.wav")):
        key = wav.stem.split("_")[0]
        language, text = refs[key]
        samples, rate = read_wav(wav)
        clips.append(Clip(key, language, text, samples, rate))
    return clips


@pytest.fixture(scope="session")
def clips() -> list[Clip]:
    if not (AUDIO_DIR / "refs.json").is_file():
        pytest.skip(f"shared audio not found at {AUDIO_DIR}")
    return _load_clips()


@pytest.fixture(scope="session")
def whisper_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asr-cache")


@pytest.fixture(scope="session")
def whisper(whisper_cache: Path) -> Iterator[WhisperAsr]:
    asr = create_asr(AsrSettings(), cache_dir=whisper_cache)
    assert isinstance(asr, WhisperAsr)
    asr.load()
    yield asr
    asr.unload()


@pytest.fixture(scope="session")
def silero() -> Iterator[VadModel]:
    model = create_vad(VadSettings(provider="silero"))
    model.load()
    yield model
    model.unload()


@pytest.fixture(scope="session")
def webrtc() -> Iterator[VadModel]:
    model = create_vad(VadSettings(provider="webrtc"))
    model.load()
    yield model
    model.unload()


@pytest.fixture(scope="session")
def piper() -> Iterator[Tts]:
    tts = create_tts(TtsSettings(provider="piper"))
    tts.load()
    yield tts
    tts.unload()
