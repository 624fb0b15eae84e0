"""End to end with the embedded real models (whisper-base, SmolLM2, piper, silero) through the
real Inference facade and scheduler: a WAV goes up as Opus, a spoken answer comes back."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from core.models.inference import Inference
from core.models.manager import ModelManager
from core.scheduler import Lane, Scheduler
from core.settings import build_settings
from devices.codec import resample_linear
from devices.simulator import read_wav_16k
from tests.devices.conftest import StartHub

pytestmark = [pytest.mark.slow]
AUDIO = Path(__file__).resolve().parents[3] / "shared" / "audio" / "en03_piper.wav"


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Scheduler, Inference]]:
    if not AUDIO.is_file():
        pytest.skip(f"{AUDIO} not found")
    settings = build_settings()
    scheduler = Scheduler(settings.scheduler)
    await scheduler.start()
    manager = ModelManager(settings.models, scheduler, tmp_path_factory.mktemp("models"))
    inference = Inference(scheduler, manager, settings.models)
    for name in ("vad", "asr", "llm", "tts"):
        await manager.load(name)
    yield scheduler, inference
    await scheduler.stop()
    await manager.close()


@pytest.fixture
def real(stack: tuple[Scheduler, Inference]) -> Inference:
    return stack[1]


async def _until_transcribing(scheduler: Scheduler, owner: str, *, timeout_s: float) -> None:
    """Return once ``owner``'s ASR job runs (a fixed sleep was too long on a fast box: whisper
    had already answered)."""
    deadline_s = asyncio.get_running_loop().time() + timeout_s
    while not scheduler.jobs(kind="asr", owner=owner, status="running"):
        if asyncio.get_running_loop().time() > deadline_s:
            raise AssertionError(f"no ASR job of {owner} ran within {timeout_s} s")
        await asyncio.sleep(0.002)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _units(text: str) -> set[str]:
    """English words and single hanzi."""
    return _words(text) | set(re.findall(r"[\u4e00-\u9fff]", text))


async def test_wav_as_opus_gets_spoken_answer(start_hub: StartHub, real: Inference) -> None:
    server = await start_hub(real, max_reply_tokens=32)
    sim = server.device(device_id="aa:bb:cc:00:00:01")
    await sim.connect()
    result = await sim.converse(read_wav_16k(AUDIO), speed=2.0, silence_s=4.0)
    assert result.stt is not None and {"capital", "australia", "sydney"} <= _words(result.stt)
    assert result.emotion is not None
    print(
        f"first audio after end of speech: {result.first_audio_latency_s:.2f} s: {result.sentences}"
    )
    assert result.sentences and all(s.strip() for s in result.sentences)
    assert sim.messages("tts")[0]["state"] == "start" and sim.messages("tts")[-1]["state"] == "stop"
    # the Opus frames decode to speech: transcribing them back recovers the first sentence's words
    assert len(result.audio) / sim.downlink_rate_hz > 0.5
    # (in whichever language the LLM answered: the Chinese device prompt asks it to answer in
    # the user's, an English-only model may still answer in Chinese; each has its own voice)
    chinese = any("\u4e00" <= ch <= "\u9fff" for ch in result.sentences[0])
    back = await real.transcribe(
        resample_linear(result.audio, sim.downlink_rate_hz, 16_000).astype(np.float32) / 32768.0,
        lane=Lane.REALTIME,
        owner="test",
        language="zh" if chinese else "en",
    )
    first = _units(result.sentences[0])
    assert len(first & _units(back.text)) >= max(1, len(first) // 2), (result.sentences, back.text)


async def test_two_real_devices_at_once(start_hub: StartHub, real: Inference) -> None:
    server = await start_hub(real, max_reply_tokens=32)
    sims = [server.device(), server.device()]
    for sim in sims:
        await sim.connect()
    pcm = read_wav_16k(AUDIO)
    results = await asyncio.gather(
        *(s.converse(pcm, speed=2.0, silence_s=6.0, timeout_s=100) for s in sims)
    )
    for result in results:
        assert result.stt is not None and "australia" in _words(result.stt)
        assert result.packets > 5 and result.sentences


async def test_abort_with_real_models_during_asr_and_tts(
    start_hub: StartHub, stack: tuple[Scheduler, Inference]
) -> None:
    scheduler, real = stack
    server = await start_hub(real, max_reply_tokens=48)
    sim = server.device()
    await sim.connect()
    pcm = read_wav_16k(AUDIO)
    for stage in ("asr", "tts"):
        start = len(sim.received)
        await sim.listen("start", "manual")
        # the ASR stage says the question three times: a longer transcription to abort
        await sim.stream_pcm(np.tile(pcm, 3) if stage == "asr" else pcm, speed=4.0)
        await sim.listen("stop", "manual")
        if stage == "tts":
            await sim.wait_message("tts", state="sentence_start", start=start, timeout_s=60)
            await asyncio.sleep(0.2)  # a few frames out: mid-sentence
        else:
            await _until_transcribing(scheduler, f"device:{sim.device_id}", timeout_s=30)
        mark = len(sim.received)
        await sim.abort()
        await sim.wait_message("tts", state="stop", start=mark, timeout_s=5)
        stop_at = len(sim.received)
        await asyncio.sleep(1.5 if stage == "tts" else 3.0)  # ASR finishes meanwhile: discarded
        assert sim.received[stop_at:] == []
        if stage == "asr":
            assert sim.messages("stt", start=start) == []
    assert server.hub.snapshot()[0]["state"] == "ready"
