"""Silero and webrtc VAD on the shipped clips, padded with a second of near-silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelLoadError
from core.models.silero.vad import SileroVadModel
from core.models.vad import Vad, VadModel, VadSettings, create_vad
from devices.endpointer import Endpointer, EndpointKind
from tests.models_audio.conftest import Clip

PAD_S = 1.0


def _padded(clip: Clip, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pad = np.zeros(int(PAD_S * clip.sample_rate_hz), dtype=np.int16)
    x = np.concatenate([pad, clip.samples, pad]).astype(np.float64)
    return np.clip(x + rng.normal(0.0, 30.0, len(x)), -32768, 32767).astype(np.int16)


def _probabilities(vad: Vad, x: np.ndarray) -> list[float]:
    n = vad.frame_samples
    return [vad.speech_probability(x[i : i + n]) for i in range(0, len(x) - n + 1, n)]


def _segments(vad: Vad, x: np.ndarray) -> list[tuple[float, float]]:
    ep = Endpointer.from_settings(VadSettings(), frame_ms=vad.frame_ms)
    events = [ep.feed(p) for p in _probabilities(vad, x)] + [ep.finish()]
    times = [e.at_ms / 1000 for e in events if e is not None]
    kinds = [e.kind for e in events if e is not None]
    assert kinds[::2] == [EndpointKind.SPEECH_START] * len(kinds[::2])
    return list(zip(times[::2], times[1::2], strict=True))


@pytest.fixture(params=["silero", "webrtc"])
def vad_model(request: pytest.FixtureRequest) -> VadModel:
    model = request.getfixturevalue(request.param)
    assert isinstance(model, VadModel)
    return model


def test_speech_region_is_found_in_every_clip(vad_model: VadModel, clips: list[Clip]) -> None:
    for i, clip in enumerate(clips):
        duration_s = len(clip.samples) / clip.sample_rate_hz
        segments = _segments(vad_model.new_stream(), _padded(clip, seed=i))
        assert len(segments) == 1, (clip.name, segments)
        start_s, end_s = segments[0]
        assert PAD_S - 0.1 <= start_s <= PAD_S + 0.5, (clip.name, start_s)
        assert PAD_S + duration_s - 0.8 <= end_s <= PAD_S + duration_s + 0.3, (clip.name, end_s)


def test_no_speech_in_silence(vad_model: VadModel) -> None:
    silence = np.zeros(16000 * 3, dtype=np.int16)
    assert _segments(vad_model.new_stream(), silence) == []


def test_silero_rejects_white_noise(silero: VadModel) -> None:
    noise = np.random.default_rng(1).normal(0, 3000, 16000 * 3).astype(np.int16)
    probs = _probabilities(silero.new_stream(), noise)
    assert max(probs) < 0.3
    assert _segments(silero.new_stream(), noise) == []


def test_streams_share_the_session_but_not_state(silero: VadModel, clips: list[Clip]) -> None:
    a_audio, b_audio = clips[0].samples, np.zeros_like(clips[0].samples)
    alone = _probabilities(silero.new_stream(), a_audio)
    a, b = silero.new_stream(), silero.new_stream()
    n = a.frame_samples
    interleaved = []
    for i in range(0, len(a_audio) - n + 1, n):
        interleaved.append(a.speech_probability(a_audio[i : i + n]))
        b.speech_probability(b_audio[i : i + n])
    np.testing.assert_allclose(interleaved, alone, rtol=1e-5, atol=1e-6)
    a.reset()
    assert _probabilities(a, a_audio) == pytest.approx(alone, abs=1e-6)


def test_frame_size_is_enforced(webrtc: VadModel, silero: VadModel) -> None:
    for model in (webrtc, silero):
        stream = model.new_stream()
        with pytest.raises(ValueError):
            stream.speech_probability(np.zeros(stream.frame_samples + 1, dtype=np.int16))


def test_unloaded_model_and_bad_file_give_model_load_error(tmp_path: Path) -> None:
    for provider in ("silero", "webrtc"):
        with pytest.raises(ModelLoadError):
            create_vad(VadSettings(provider=provider)).new_stream()
    bad = tmp_path / "vad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match="cannot load Silero VAD"):
        SileroVadModel(VadSettings(), model_path=bad).load()
