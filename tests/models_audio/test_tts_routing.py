"""Language routing of TTS: script splitting, voices per run, cancel, load; piper never spells
hanzi. Test-double voices, no model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from core.errors import JobCancelled, ModelLoadError
from core.models.base import CancelCheck, never_cancelled
from core.models.piper.tts import PiperTts, without_hanzi
from core.models.tts import PcmChunk, Tts, TtsSettings
from core.models.tts_routing import LanguageRoutedTts, ScriptRun, split_by_script


class RecordingVoice(Tts):
    def __init__(self, name: str, *, fail_load: bool = False) -> None:
        self.name = name
        self.fail_load = fail_load
        self.spoken: list[str] = []
        self.loads = self.unloads = 0

    def load(self) -> None:
        self.loads += 1
        if self.fail_load:
            raise ModelLoadError(f"{self.name} is broken (test double)")

    def unload(self) -> None:
        self.unloads += 1

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        self.spoken.append(text)
        check()
        yield PcmChunk(np.full(10, len(self.spoken), np.int16), sample_rate_hz)


def test_text_is_split_by_script_with_neutral_characters_kept_in_place() -> None:
    assert split_by_script("今天用 iPhone 拍照。OK?") == [
        ScriptRun("zh", "今天用"),
        ScriptRun("en", "iPhone"),
        ScriptRun("zh", "拍照。"),
        ScriptRun("en", "OK?"),
    ]
    # digits and punctuation stay with the run before them (the Mandarin voice reads 25 in
    # Chinese), and a sentence starting with digits joins the first run
    assert split_by_script("最高气温25度，很好！") == [ScriptRun("zh", "最高气温25度，很好！")]
    assert split_by_script("25度") == [ScriptRun("zh", "25度")]
    assert split_by_script("Hello, world. 3.5 degrees") == [
        ScriptRun("en", "Hello, world. 3.5 degrees")
    ]
    assert split_by_script("  ！？ ") == []  # nothing in any script: nothing to say
    # digits without letters are still spoken, by the default route
    assert split_by_script("  ！？ 123 ") == [ScriptRun("en", "！？ 123")]
    assert split_by_script("Café 咖啡") == [ScriptRun("en", "Café"), ScriptRun("zh", "咖啡")]


def routed() -> tuple[LanguageRoutedTts, RecordingVoice, RecordingVoice]:
    en, zh = RecordingVoice("en"), RecordingVoice("zh")
    return LanguageRoutedTts(default=en, voices={"zh": zh}), en, zh


def test_each_run_goes_to_its_language_voice_in_order() -> None:
    tts, en, zh = routed()
    chunks = list(
        tts.synthesize(
            "你好！I am Xiaoyou. 很高兴认识你。", sample_rate_hz=16000, check=never_cancelled
        )
    )
    assert zh.spoken == ["你好！", "很高兴认识你。"] and en.spoken == ["I am Xiaoyou."]
    assert [int(c.samples[0]) for c in chunks] == [1, 1, 2]  # zh, en, zh in text order
    assert all(c.sample_rate_hz == 16000 for c in chunks)
    assert tts.voice_for("ko") is en  # a script without a voice: the default (en) voice


def test_cancel_between_runs_stops_the_rest() -> None:
    tts, en, zh = routed()
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise JobCancelled("cancelled by test")

    got = []
    with pytest.raises(JobCancelled):
        for chunk in tts.synthesize("你好。Hello there. 再见。", sample_rate_hz=16000, check=check):
            got.append(chunk)
    assert len(got) == 1 and zh.spoken == ["你好。"] and en.spoken == []


def test_load_loads_each_voice_once_and_a_failure_unloads_the_others() -> None:
    en = RecordingVoice("en")
    tts = LanguageRoutedTts(default=en, voices={"zh": en, "yue": en})
    tts.load()
    tts.unload()
    assert (en.loads, en.unloads) == (1, 1)
    good, bad = RecordingVoice("en"), RecordingVoice("zh", fail_load=True)
    tts = LanguageRoutedTts(default=good, voices={"zh": bad})
    with pytest.raises(ModelLoadError, match="broken"):
        tts.load()
    assert good.unloads == 1


class FakePiperVoice:
    """Stands in for piper.PiperVoice: records the text piper would phonemize."""

    class config:  # mirrors PiperVoice.config
        sample_rate = 16000

    def __init__(self) -> None:
        self.texts: list[str] = []

    def synthesize(self, text: str, syn_config: Any = None) -> Iterator[Any]:
        self.texts.append(text)

        class Audio:
            audio_float_array = np.zeros(160, np.float32)

        yield Audio()


def test_piper_never_spells_hanzi() -> None:
    """An English piper voice read each hanzi as "Chinese letter"; it must never see one."""
    piper = PiperTts(TtsSettings(provider="piper"))
    voice = FakePiperVoice()
    piper._voice = voice
    list(piper.synthesize("你好，Xiaoyou 在这里。", sample_rate_hz=16000, check=never_cancelled))
    assert voice.texts and not any("\u4e00" <= ch <= "\u9fff" for ch in "".join(voice.texts))
    assert "Xiaoyou" in voice.texts[0]
    voice.texts.clear()
    out = list(piper.synthesize("你好。", sample_rate_hz=16000, check=never_cancelled))
    assert out == [] and voice.texts == []  # nothing left to say: no audio at all
    assert without_hanzi("OK，好的。") == "OK    "
