"""TTS routes by language that name remote voices: Edge for Mandarin and a local voice for
English (or the other way round), each part of a mixed text spoken by its own kind of job."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from core.models.tts import TtsSettings, create_tts
from core.models.tts_routing import (
    LanguageRoutedTts,
    RemoteRoutedTts,
    RoutePart,
    ScriptRun,
    route_parts,
    split_by_script,
)
from core.scheduler import Lane
from tests.remote.servers import TONE_HZ, RunningServer

XIAOXIAO = "Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)"
ARIA = "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)"


def pitch_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * rate_hz / len(samples))


def edge_routes(server: RunningServer, languages: dict[str, str], **edge: Any) -> dict[str, Any]:
    return {"tts": {"languages": languages, "edge": {"wss_url": server.edge_url, **edge}}}


def test_parts_follow_the_routes() -> None:
    remote_zh = {"zh": True, "en": False}
    assert route_parts("你好，world。今天 OK", remote_zh) == [
        RoutePart(True, "你好，"),
        RoutePart(False, "world。"),
        RoutePart(True, "今天"),
        RoutePart(False, "OK"),
    ]
    assert route_parts("你好 world", {"zh": True, "en": True}) == [RoutePart(True, "你好 world")]
    assert route_parts("你好 world", {"en": True}) == [
        RoutePart(True, "你好 world")
    ]  # en: the rest


def test_text_without_letters_goes_to_the_default_route() -> None:
    assert split_by_script("2025。") == [ScriptRun("en", "2025。")]
    assert split_by_script(" 。") == []


def test_routes_build_local_remote_or_mixed_backends(server: RunningServer) -> None:
    local = create_tts(TtsSettings(languages={"zh": "espeak", "en": "piper"}))
    assert isinstance(local, LanguageRoutedTts)
    remote = TtsSettings(languages={"zh": "edge", "en": "openai"})
    assert remote.remote and not remote.mixed_routes
    assert isinstance(create_tts(remote), RemoteRoutedTts)
    mixed = TtsSettings(languages={"zh": "edge", "en": "piper"})
    assert mixed.mixed_routes and not mixed.remote
    assert mixed.remote_routes() == {"zh": True, "en": False}
    assert type(create_tts(mixed, "local")).__name__ == "PiperTts"
    assert type(create_tts(mixed, "remote")).__name__ == "EdgeTts"


async def test_mixed_text_edge_for_mandarin_piper_for_english(
    server: RunningServer, make_stack: Any
) -> None:
    models = edge_routes(server, {"zh": "edge", "en": "piper"})
    models["warm_start"] = False
    async with make_stack(models) as (sched, manager, inference):
        assert sorted(manager.names) == ["asr", "llm", "sd", "tts", "tts_remote", "vad", "vl"]
        handle = inference.speak(
            "你好，world", lane=Lane.REALTIME, owner="device:1", sample_rate_hz=24_000
        )
        chunks = [chunk async for chunk in handle.stream()]
        jobs = {j["kind"]: j for j in sched.jobs(limit=20)}
    assert server.state.edge_texts == ["你好，"] and server.state.edge_voices == [XIAOXIAO]
    relay, edge, piper = jobs["tts:route"], jobs["tts_remote"], jobs["tts"]
    assert relay["mode"] == "async" and relay["resources"] == {}
    assert edge["mode"] == "async" and edge["resources"] == {"remote:tts": 1}
    assert piper["mode"] == "thread" and "cpu" in piper["resources"]
    assert all(j["status"] == "completed" for j in (relay, edge, piper))
    assert all(c.sample_rate_hz == 24_000 and c.samples.dtype == np.int16 for c in chunks)
    audio = np.concatenate([c.samples for c in chunks])
    tone_samples = int(24_000 * 0.08 * len("你好，"))  # the stand-in: a tone of 0.08 s per char
    assert pitch_hz(audio[: tone_samples - 2_400], 24_000) == pytest.approx(TONE_HZ, abs=5)
    english = audio[tone_samples:]
    assert len(english) > 24_000 * 0.2  # piper's "world"
    assert np.abs(english.astype(np.int32)).max() > 1_000


async def test_local_mandarin_edge_english_and_a_pure_part_is_one_job(
    server: RunningServer, make_stack: Any
) -> None:
    models = edge_routes(server, {"zh": "espeak", "en": "edge"})
    models["warm_start"] = False
    async with make_stack(models) as (sched, _, inference):
        mixed = inference.speak(
            "今天用 iPhone 拍照。", lane=Lane.INTERACTIVE, owner="qq:1", sample_rate_hz=16_000
        )
        assert len([c async for c in mixed.stream()]) >= 3
        english = inference.speak(
            "Nice.", lane=Lane.INTERACTIVE, owner="qq:1", sample_rate_hz=16_000
        )
        assert [c async for c in english.stream()]
        kinds = [j["kind"] for j in sched.jobs(limit=20)]
        solo = sched.job(english.id)
    assert server.state.edge_texts == ["iPhone", "Nice."]
    assert server.state.edge_voices == [ARIA, ARIA]
    assert sorted(kinds) == ["tts", "tts", "tts:route", "tts_remote", "tts_remote"]
    assert solo is not None and solo["kind"] == "tts_remote"  # no relay for a one-route text


async def test_cancelling_the_reply_cancels_its_part_jobs(
    server: RunningServer, make_stack: Any
) -> None:
    server.state.tts_chunk_delay_s = 0.2  # Edge streams slowly
    server.state.tts_s_per_char = 0.5
    models = edge_routes(server, {"zh": "edge", "en": "piper"})
    models["warm_start"] = False
    async with make_stack(models) as (sched, _, inference):
        handle = inference.speak(
            "你好你好你好，world", lane=Lane.REALTIME, owner="device:1", sample_rate_hz=24_000
        )
        stream = handle.stream()
        await stream.__anext__()
        handle.cancel("barge-in")
        await asyncio.sleep(0.3)
        jobs = {j["kind"]: j["status"] for j in sched.jobs(limit=20)}
        stats = sched.stats()
    assert jobs["tts:route"] == "cancelled" and jobs["tts_remote"] == "cancelled"
    assert jobs["tts"] in ("cancelled", "completed")  # the prefetched English part
    assert "remote:tts" in str(stats)


async def test_all_remote_routes_run_as_one_async_job(
    server: RunningServer, make_stack: Any
) -> None:
    models = edge_routes(server, {"zh": "edge", "en": "edge"})
    models["warm_start"] = False
    async with make_stack(models) as (sched, manager, inference):
        assert "tts_remote" not in manager.names
        handle = inference.speak(
            "你好，world", lane=Lane.REALTIME, owner="device:1", sample_rate_hz=24_000
        )
        assert [c async for c in handle.stream()]
        job = sched.job(handle.id)
    assert job is not None and job["mode"] == "async" and job["resources"] == {"remote:tts": 1}
    assert server.state.edge_texts == ["你好，", "world"]
    assert server.state.edge_voices == [XIAOXIAO, ARIA]  # a voice per script run
