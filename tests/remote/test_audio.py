"""Remote ASR and TTS (OpenAI audio API, Edge read-aloud through edge-tts) on loopback servers."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from core.models.asr import ZH_PROMPT, AsrSettings, create_asr
from core.models.base import never_cancelled
from core.models.tts import TtsSettings, create_tts
from core.scheduler import Lane
from tests.remote.servers import TONE_HZ, TRUSTED_TOKEN, RunningServer


def pitch_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * rate_hz / len(samples))


@pytest.mark.parametrize(
    ("fmt", "language", "expected"),
    [("json", "zh", "zh"), ("verbose_json", None, "zh"), ("text", None, "zh")],
)
async def test_transcriptions_upload_wav_and_parse_each_format(
    server: RunningServer, fmt: str, language: str | None, expected: str
) -> None:
    settings = AsrSettings(
        provider="openai",
        language=language,
        openai={"base_url": server.url, "response_format": fmt, "api_key": "sk-a"},
    )
    asr = create_asr(settings, cache_dir=None)  # type: ignore[arg-type]
    pcm = (0.1 * np.sin(np.arange(24_000) / 5)).astype(np.float32)
    result = await asr.atranscribe(pcm)  # type: ignore[attr-defined]
    await asr.aclose()  # type: ignore[attr-defined]
    assert result.text == "把音量调到六十" and result.language == expected
    assert result.audio_s == pytest.approx(1.5)
    seen = server.state.requests[-1]
    assert seen["rate_hz"] == 16_000 and seen["audio_s"] == pytest.approx(1.5)
    assert seen["auth"] == "Bearer sk-a" and seen["form"]["model"] == "whisper-1"
    if language == "zh":
        assert seen["form"]["language"] == "zh" and seen["form"]["prompt"] == ZH_PROMPT


async def test_transcription_through_the_scheduler(server: RunningServer, make_stack: Any) -> None:
    server.state.fail_next = [503]  # retried
    models = {
        "asr": {"provider": "openai", "openai": {"base_url": server.url, "retry_backoff_s": 0.01}}
    }
    async with make_stack(models) as (sched, _, inference):
        result = await inference.transcribe(
            np.zeros(16_000, np.float32), lane=Lane.REALTIME, owner="device:1"
        )
        stats = sched.stats()
    assert result.text == "把音量调到六十"
    assert "remote:asr" in str(stats)


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3"])
def test_speech_streams_and_decodes_each_format(server: RunningServer, fmt: str) -> None:
    settings = TtsSettings(
        provider="openai",
        openai={"base_url": server.url, "response_format": fmt, "voices": {"zh": "zf_xiaoxiao"}},
    )
    tts = create_tts(settings)
    tts.load()
    try:
        chunks = list(tts.synthesize("你好，世界。", sample_rate_hz=16_000, check=never_cancelled))
    finally:
        tts.unload()
    audio = np.concatenate([c.samples for c in chunks])
    assert all(c.sample_rate_hz == 16_000 and c.samples.dtype == np.int16 for c in chunks)
    assert len(chunks) >= 2  # decoded as the bytes arrived, not once at the end
    assert len(audio) / 16_000 == pytest.approx(0.48, abs=0.1)  # 6 chars * 0.08 s
    assert pitch_hz(audio, 16_000) == pytest.approx(TONE_HZ, abs=5)
    body = server.state.requests[-1]["body"]
    assert body["voice"] == "zf_xiaoxiao" and body["response_format"] == fmt


def test_edge_speaks_each_sentence_with_its_languages_voice(server: RunningServer) -> None:
    tts = create_tts(TtsSettings(provider="edge", edge={"wss_url": server.edge_url}))
    tts.load()
    try:
        chunks = list(
            tts.synthesize(
                "你好，我是小优。Nice to meet you.", sample_rate_hz=24_000, check=never_cancelled
            )
        )
    finally:
        tts.unload()
    audio = np.concatenate([c.samples for c in chunks])
    assert pitch_hz(audio, 24_000) == pytest.approx(TONE_HZ, abs=5)
    voices = server.state.edge_voices
    assert voices == [
        "Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)",
        "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)",
    ]
    assert '"outputFormat":"audio-24khz-48kbitrate-mono-mp3"' in server.state.edge_config[0]
    query = server.state.edge_queries[0]
    assert query["TrustedClientToken"] == TRUSTED_TOKEN
    assert {"ConnectionId", "Sec-MS-GEC", "Sec-MS-GEC-Version"} <= set(query)


async def test_edge_through_the_scheduler_and_cancel(
    server: RunningServer, make_stack: Any
) -> None:
    server.state.tts_chunk_delay_s = 0.05
    server.state.tts_s_per_char = 0.3
    models = {
        "tts": {
            "provider": "edge",
            "edge": {"wss_url": server.edge_url, "voices": {"zh": "zh-CN-YunxiNeural"}},
        }
    }
    async with make_stack(models) as (sched, _, inference):
        handle = inference.speak(
            "今天天气很好。", lane=Lane.REALTIME, owner="device:1", sample_rate_hz=24_000
        )
        stream = handle.stream()
        first = await stream.__anext__()
        assert first.samples.dtype == np.int16 and len(first.samples) > 0
        job = sched.job(handle.id)
        assert job is not None and job["mode"] == "async" and job["resources"] == {"remote:tts": 1}
        handle.cancel()
        await asyncio.sleep(0.1)
        assert server.state.edge_voices == [
            "Microsoft Server Speech Text to Speech Voice (zh-CN, YunxiNeural)"
        ]
