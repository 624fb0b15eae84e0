"""The resampler and WAV helpers in core.models.audio."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InferenceError
from core.models.audio import Resampler, parse_wav_header, resample, to_int16, wav_bytes


def _tone(freq_hz: float, rate_hz: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate_hz / len(x))


@pytest.mark.parametrize(("in_hz", "out_hz"), [(22050, 16000), (22050, 24000), (32000, 16000)])
def test_tone_keeps_its_pitch_and_length(in_hz: int, out_hz: int) -> None:
    y = resample(_tone(1000.0, in_hz, 1.0), in_hz, out_hz)
    assert len(y) == out_hz
    assert abs(_peak_hz(y, out_hz) - 1000.0) < 2.0
    expected = _tone(1000.0, out_hz, 1.0)
    # away from the edges the output is the same tone within ~-50 dB
    assert np.max(np.abs(y[300:-300] - expected[300:-300])) < 3e-3


def test_frequencies_above_the_new_nyquist_are_removed() -> None:
    y = resample(_tone(10_000.0, 22050, 1.0), 22050, 16000)  # 10 kHz > 8 kHz Nyquist
    assert np.max(np.abs(y[300:-300])) < 1e-3


def test_chunked_input_gives_the_same_samples_as_one_call() -> None:
    x = _tone(440.0, 22050, 0.7) + _tone(3000.0, 22050, 0.7)
    whole = resample(x, 22050, 24000)
    r = Resampler(22050, 24000)
    sizes = [1, 7, 300, 2048, 5, 10_000]
    parts, pos = [], 0
    for size in sizes:
        parts.append(r.process(x[pos : pos + size]))
        pos += size
    parts.extend([r.process(x[pos:]), r.flush()])
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)


def test_int16_input_is_scaled_and_same_rate_passes_through() -> None:
    x = np.array([0, 16384, -32768], dtype=np.int16)
    np.testing.assert_allclose(resample(x, 16000, 16000), [0.0, 0.5, -1.0])
    assert to_int16(np.array([2.0, -2.0, 0.5], dtype=np.float32)).tolist() == [32767, -32768, 16384]


def test_wav_header_round_trip_and_streamed_placeholder_size() -> None:
    data = wav_bytes(np.arange(100, dtype=np.int16), 22050)
    assert parse_wav_header(data[:30]) is None  # header not complete yet
    rate, channels, offset = parse_wav_header(data) or (0, 0, 0)
    assert (rate, channels) == (22050, 1)
    assert np.frombuffer(data[offset:], dtype="<i2").tolist() == list(range(100))
    streamed = data[:4] + b"\xff\xff\xff\xff" + data[8:40] + b"\xff\xff\xff\xff" + data[44:]
    assert parse_wav_header(streamed) == (22050, 1, 44)


def test_non_wav_stream_is_an_inference_error() -> None:
    with pytest.raises(InferenceError):
        parse_wav_header(b'{"message": "bad request"}')
