"""Unit tests of the small stages: protocol, session, segmenter, memory, pacer, codec."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ProtocolError
from devices.codec import InvalidOpus, OpusDecoder, OpusEncoder
from devices.memory import ConversationMemory
from devices.pacer import DEVICE_BUFFER_MS, PacedSender
from devices.protocol import (
    Abort,
    HelloIn,
    Listen,
    Mcp,
    Tts,
    pack_frame,
    parse_device_message,
    parse_server_message,
    unpack_frame,
)
from devices.segmenter import SentenceSegmenter
from devices.session import IllegalTransition, SessionState, SessionStateMachine
from devices.simulator import trailing_silence_s
from devices.turn import emotion_of, strip_emoji


def test_parse_firmware_messages() -> None:
    hello = parse_device_message(
        json.dumps(
            {
                "type": "hello",
                "version": 3,
                "features": {"mcp": True, "aec": True},
                "transport": "websocket",
                "text_font": {"bundle": "noto-v1"},
                "audio_params": {
                    "format": "opus",
                    "sample_rate": 16000,
                    "channels": 1,
                    "frame_duration": 60,
                },
            }
        )
    )
    assert (
        isinstance(hello, HelloIn)
        and hello.version == 3
        and hello.audio_params.frame_duration == 60
    )
    listen = parse_device_message(
        '{"session_id":"x","type":"listen","state":"detect","text":"你好小智"}'
    )
    assert isinstance(listen, Listen) and listen.text == "你好小智" and listen.mode is None
    assert isinstance(parse_device_message('{"type":"abort","reason":"wake_word_detected"}'), Abort)
    mcp = parse_device_message('{"type":"mcp","payload":{"jsonrpc":"2.0","id":1,"result":{}}}')
    assert isinstance(mcp, Mcp) and mcp.payload["id"] == 1


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "malformed JSON"),
        ("42", "JSON object"),
        ('{"x":1}', "'type'"),
        ('{"type":"stt"}', "unknown"),
        ('{"type":"listen","state":"start","mode":"loud"}', "mode"),
    ],
)
def test_parse_errors_are_clear(raw: str, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        parse_device_message(raw)


def test_server_messages_round_trip() -> None:
    text = Tts(state="sentence_start", text="Hi.", session_id="s").to_json()
    assert json.loads(text) == {
        "type": "tts",
        "state": "sentence_start",
        "text": "Hi.",
        "session_id": "s",
    }
    assert parse_server_message(text) == Tts(state="sentence_start", text="Hi.", session_id="s")


@given(
    st.sampled_from([1, 2, 3]),
    st.binary(max_size=2000),
    st.integers(0, 1),
    st.integers(0, 2**32 - 1),
)
def test_binary_framing_round_trip(version: int, payload: bytes, frame_type: int, ts: int) -> None:
    frame = unpack_frame(
        version, pack_frame(version, payload, frame_type=frame_type, timestamp_ms=ts)
    )
    assert frame.payload == payload
    if version > 1:
        assert frame.frame_type == frame_type
    if version == 2:
        assert frame.timestamp_ms == ts


def test_binary_framing_layout_and_errors() -> None:
    assert pack_frame(3, b"ab") == b"\x00\x00\x00\x02ab"
    assert pack_frame(2, b"a", timestamp_ms=5)[:16] == bytes.fromhex(
        "0002 0000 00000000 00000005 00000001"
    )
    with pytest.raises(ProtocolError, match="states 9 payload bytes but carries 2"):
        unpack_frame(3, b"\x00\x00\x00\x09ab")
    with pytest.raises(ProtocolError, match="unsupported"):
        pack_frame(4, b"")


def test_session_transitions() -> None:
    sm = SessionStateMachine()
    with pytest.raises(IllegalTransition, match="connected → speaking"):
        sm.move(SessionState.SPEAKING)
    for target in ("ready", "listening", "thinking", "speaking", "listening", "closed"):
        sm.move(SessionState(target))
    assert sm.closed and not sm.can(SessionState.READY)


def test_segmenter_english_and_chinese() -> None:
    seg = SentenceSegmenter(first_soft_chars=100)
    out: list[str] = []
    for piece in [
        "It costs 3.",
        "5 dollars. Mr",
        " Smith agrees! 你好",
        "。今天天气",
        "很好！最后",
    ]:
        out += seg.push(piece)
    out += seg.flush()
    assert out == ["It costs 3.5 dollars.", "Mr Smith agrees!", "你好。", "今天天气很好！", "最后"]


def test_segmenter_cuts_first_sentence_at_comma_for_latency() -> None:
    seg = SentenceSegmenter(first_soft_chars=12)
    assert seg.push("Canberra is the capital, about 280 km away, ok") == [
        "Canberra is the capital,"
    ]
    assert seg.flush() == ["about 280 km away, ok"]  # later sentences are not cut at commas


def test_segmenter_cuts_a_long_first_sentence_at_a_space() -> None:
    seg = SentenceSegmenter(first_max_chars=20)
    text = "Canberra is the capital city of Australia and it lies inland. Sydney is bigger"
    assert seg.push(text) == ["Canberra is the capital", "city of Australia and it lies inland."]
    assert seg.flush() == ["Sydney is bigger"]  # only the first sentence is cut early
    assert SentenceSegmenter().push("A short one. Then") == ["A short one."]


def test_segmenter_cuts_later_sentences_at_a_comma_when_asked() -> None:
    seg = SentenceSegmenter(first_soft_chars=12, soft_chars=20)
    text = "Canberra is the capital. It lies three hundred kilometres away, inland, near hills. Ok"
    assert seg.push(text) == [
        "Canberra is the capital.",
        "It lies three hundred kilometres away,",  # past 20 characters: cut at the comma
        "inland, near hills.",  # "inland," alone is shorter than 20
    ]
    assert SentenceSegmenter().push("Short. It lies far away, inland, near hills. Ok") == [
        "Short.",
        "It lies far away, inland, near hills.",  # default: later sentences stay whole
    ]


@given(st.lists(st.text(max_size=12), max_size=20))
def test_segmenter_loses_no_speakable_text(pieces: list[str]) -> None:
    seg = SentenceSegmenter()
    out: list[str] = []
    for piece in pieces:
        out += seg.push(piece)
    out += seg.flush()
    joined = "".join(pieces)
    assert (
        "".join("".join(out).split()) == "".join(joined.split())
        or not any(c.isalnum() for c in joined)
        or (
            "".join(c for c in "".join(out) if c.isalnum())
            == "".join(c for c in joined if c.isalnum())
        )
    )


def test_emoji_emotion_and_stripping() -> None:
    assert emotion_of("Sure 😄 here") == ("laughing", "😄")
    assert emotion_of("plain") == ("happy", "🙂")
    assert strip_emoji("😊 Hello!") == "Hello!"


def test_memory_is_bounded() -> None:
    memory = ConversationMemory(max_exchanges=2, max_chars=40)
    for i in range(5):
        memory.add(f"question {i}", f"answer {i}")
    assert len(memory) == 2
    assert [m.content for m in memory.messages_for("next")][1:] == [
        "question 3",
        "answer 3",
        "question 4",
        "answer 4",
        "next",
    ]
    memory.add("q" * 30, "a" * 30)
    assert len(memory) == 1


async def test_pacer_bursts_then_keeps_absolute_clock() -> None:
    now = [100.0]
    sent: list[float] = []

    async def sleep(s: float) -> None:
        now[0] += s + 0.004  # every sleep overshoots: the absolute clock must not drift

    async def send(packet: bytes) -> None:
        sent.append(now[0])

    pacer = PacedSender(send, frame_ms=60, lead_ms=300, clock=lambda: now[0], sleep=sleep)
    for _ in range(100):
        await pacer.send(b"x")
    assert sent[:6] == [100.0] * 6 and sent[6] > 100.0  # burst: the first frame + 300 ms lead
    assert sent[99] - 100.0 == pytest.approx(99 * 0.06 - 0.3, abs=0.005)  # no drift from overshoot
    assert (
        pacer.max_ahead_s == pytest.approx((300 + 60) / 1000)
        and pacer.max_ahead_s < DEVICE_BUFFER_MS / 1000
    )
    now[0] += 10.0  # producer stalls: the device ran dry, the next frame starts a new burst
    await pacer.send(b"x")
    assert sent[-1] == now[0]


def test_opus_round_trip_and_invalid_packet() -> None:
    encoder, decoder = OpusEncoder(16_000), OpusDecoder(16_000)
    tone = (np.sin(np.arange(16_000) * 2 * np.pi * 440 / 16_000) * 8000).astype(np.int16)
    packets = encoder.encode(tone[:1000]) + encoder.encode(tone[1000:]) + encoder.flush()
    assert len(packets) == 17  # 1 s in 60 ms frames, the last padded
    pcm = np.concatenate([decoder.decode(p) for p in packets])
    assert len(pcm) == 17 * 960 and np.sqrt(np.mean(pcm.astype(float) ** 2)) > 3000
    with pytest.raises(InvalidOpus):
        decoder.decode(b"\xff\xff\xff")
    with pytest.raises(InvalidOpus):
        decoder.decode(b"")


def test_simulator_finds_the_end_of_speech_before_trailing_silence() -> None:
    rate = 16_000
    voiced = (np.sin(np.arange(rate) / 5) * 8000).astype(np.int16)  # 1 s of tone
    clip = np.concatenate([np.zeros(rate // 10, np.int16), voiced, np.zeros(rate // 4, np.int16)])
    assert trailing_silence_s(clip) == pytest.approx(0.25, abs=0.011)
    assert trailing_silence_s(voiced) == pytest.approx(0.0, abs=0.011)
    assert trailing_silence_s(np.zeros(rate, np.int16)) == 1.0  # nothing voiced at all


def test_device_system_prompt_is_chinese_by_default_and_configurable() -> None:
    from core.settings import DeviceSettings
    from devices.hub import DeviceHub

    default = DeviceHub(DeviceSettings(), inference=None).pipeline_config("aa:bb")  # type: ignore[arg-type]
    assert default.system_prompt == DeviceSettings().system_prompt
    assert "你是小优" in default.system_prompt and "普通话" in default.system_prompt
    assert "你是小优" in ConversationMemory().messages_for("你好")[0].content
    custom = DeviceHub(DeviceSettings(system_prompt="你是一只猫。"), inference=None)  # type: ignore[arg-type]
    prompt = custom.pipeline_config("aa:bb").system_prompt
    assert prompt == "你是一只猫。"
    memory = ConversationMemory(system_prompt=prompt)
    assert memory.messages_for("喵")[0].content == "你是一只猫。"


def test_english_utterance_gets_the_english_device_prompt() -> None:
    """Issue 12: with the Chinese device prompt the default model answered an English question
    in Chinese; an English utterance now gets the prompt written in English (configurable per
    language; {} keeps the one prompt), a Chinese or unknown one the Chinese prompt."""
    from core.settings import DeviceSettings
    from devices.hub import DeviceHub

    config = DeviceHub(DeviceSettings(), inference=None).pipeline_config("aa:bb")  # type: ignore[arg-type]
    memory = ConversationMemory(
        system_prompt=config.system_prompt, system_prompts=config.system_prompts
    )
    english = memory.messages_for("What is the capital of Australia?")[0].content
    assert "in English" in english and "你" not in english
    assert memory.messages_for("澳大利亚的首都是哪里？")[0].content == config.system_prompt
    assert memory.messages_for("123")[0].content == config.system_prompt
    assert ConversationMemory().messages_for("Hello there")[0].content == english
    single = ConversationMemory(system_prompt="你是一只猫。", system_prompts={})
    assert single.messages_for("Hello there")[0].content == "你是一只猫。"
    custom = DeviceSettings(system_prompts={"en": "You are a cat."})
    hub_config = DeviceHub(custom, inference=None).pipeline_config("aa:bb")  # type: ignore[arg-type]
    cat = ConversationMemory(system_prompts=hub_config.system_prompts)
    assert cat.messages_for("Hello there")[0].content == "You are a cat."


def test_segmenter_cuts_a_short_chinese_first_clause_at_its_comma() -> None:
    # "好的，" is a whole clause (two syllables): speaking it while the LLM writes the rest is
    # the sooner first audio; before, the first cut waited for 12 characters
    seg = SentenceSegmenter(first_soft_chars=12)
    assert seg.push("好的，我来帮你设置一个十分钟的计时器，然后提醒你。") == [
        "好的，",
        "我来帮你设置一个十分钟的计时器，然后提醒你。",  # later clauses stay whole by default
    ]
    assert SentenceSegmenter().push("好，") == []  # one syllable alone is no clause
    assert SentenceSegmenter(first_soft_hanzi=0).push("好的，我来，") == []


def test_segmenter_cuts_later_chinese_clauses_at_six_hanzi_when_asked() -> None:
    # the next audio after a short first clause waited for the whole next sentence: the
    # silence inside a reply was the LLM writing 20 more characters
    seg = SentenceSegmenter(soft_chars=20, soft_hanzi=6)
    assert seg.push("好的，我来帮你设置一个十分钟的计时器，然后提醒你检查考箱。嗯") == [
        "好的，",
        "我来帮你设置一个十分钟的计时器，",
        "然后提醒你检查考箱。",
    ]
    assert SentenceSegmenter(soft_chars=20, soft_hanzi=6).push("好的，我来，你看，行吗？") == [
        "好的，",
        "我来，你看，行吗？",  # clauses under six hanzi stay together
    ]
