"""Shared audio helpers for the speech backends: a streaming polyphase resampler, WAV I/O and
which 10 ms frames of a clip are voiced.

The resampler is a windowed-sinc (Kaiser) polyphase filter in plain numpy: the output rate is
``in_hz * L / M`` for coprime ``L``, ``M``; each output sample takes ``2 * half_taps`` input
samples weighted by one of ``L`` precomputed filter phases. It keeps its input history between
``process`` calls, so chunked input (one TTS sentence or HTTP chunk at a time) gives the same
samples as one call on the whole signal — no clicks at chunk borders.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path

import numpy as np

from core.errors import InferenceError

_ZERO_CROSSINGS = 16  # sinc lobes per side: ~-80 dB stop band with the Kaiser window below
_ROLLOFF = 0.94  # cut-off as a fraction of the lower Nyquist frequency (keeps aliasing out)
_KAISER_BETA = 8.6
_BLOCK_OUTPUTS = 4096  # outputs per vectorised step (bounds the gather matrix's memory)


class Resampler:
    """Streaming resampler for mono audio; feed float32 or int16, get float32 back."""

    def __init__(self, in_hz: int, out_hz: int) -> None:
        if in_hz <= 0 or out_hz <= 0:
            raise ValueError(f"sample rates must be positive, got {in_hz} -> {out_hz}")
        g = math.gcd(in_hz, out_hz)
        self.in_hz, self.out_hz = in_hz, out_hz
        self._up, self._down = out_hz // g, in_hz // g
        ratio = min(1.0, out_hz / in_hz) * _ROLLOFF  # cut-off in cycles per input sample * 2
        self._half = math.ceil(_ZERO_CROSSINGS / ratio)
        offsets = np.arange(-self._half + 1, self._half + 1, dtype=np.float64)  # k - frac
        phases = np.arange(self._up, dtype=np.float64) / self._up
        tau = offsets[None, :] - phases[:, None]  # (L, 2H): input time minus output time
        window = np.kaiser(2 * self._half + 1, _KAISER_BETA)
        win = np.interp(tau, np.arange(-self._half, self._half + 1), window)
        self._table = (ratio * np.sinc(ratio * tau) * win).astype(np.float32)
        self._taps = np.arange(-self._half + 1, self._half + 1, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Start a new signal (the signal is taken as zero before its first sample)."""
        self._buf = np.zeros(self._half, dtype=np.float32)
        self._buf_start = -self._half  # absolute input index of _buf[0]
        self._next_out = 0
        self._in_count = 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Append input and return every output sample that is now fully determined."""
        x = _as_float(samples)
        self._in_count += len(x)
        self._buf = np.concatenate([self._buf, x])
        last_usable = self._buf_start + len(self._buf) - 1 - self._half  # newest centre index
        return self._emit(last_usable, limit=None)

    def flush(self) -> np.ndarray:
        """Return the remaining output (pads the end with zeros) and reset."""
        total_out = -(-self._in_count * self._up // self._down)  # ceil
        self._buf = np.concatenate([self._buf, np.zeros(self._half, dtype=np.float32)])
        last_usable = self._buf_start + len(self._buf) - 1 - self._half
        out = self._emit(last_usable, limit=total_out)
        self.reset()
        return out

    def _emit(self, last_usable: int, *, limit: int | None) -> np.ndarray:
        # output n sits at input time n*M/L; it needs inputs up to floor(n*M/L) + H
        n_end = max(0, -(-(last_usable + 1) * self._up // self._down))
        if limit is not None:
            n_end = min(n_end, limit)
        pieces: list[np.ndarray] = []
        for start in range(self._next_out, n_end, _BLOCK_OUTPUTS):
            ns = np.arange(start, min(n_end, start + _BLOCK_OUTPUTS), dtype=np.int64)
            base = ns * self._down // self._up
            phase = (ns * self._down) % self._up
            idx = base[:, None] + self._taps[None, :] - self._buf_start
            pieces.append(np.einsum("ij,ij->i", self._buf[idx], self._table[phase]))
        self._next_out = max(self._next_out, n_end)
        keep_from = self._next_out * self._down // self._up - self._half + 1
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        out: np.ndarray = np.concatenate(pieces).astype(np.float32, copy=False)
        return out


def resample(samples: np.ndarray, in_hz: int, out_hz: int) -> np.ndarray:
    """One-shot resampling of a whole signal; returns float32 (int16 input is scaled to -1..1)."""
    if in_hz == out_hz:
        return _as_float(samples)
    r = Resampler(in_hz, out_hz)
    out: np.ndarray = np.concatenate([r.process(samples), r.flush()])  # Any under numpy<2
    return out


def voiced_frames(samples: np.ndarray, sample_rate_hz: int, share: float) -> np.ndarray:
    """Indices of the 10 ms frames whose RMS is above ``share`` of the loudest one (none for
    silence or a clip shorter than 10 ms)."""
    step = sample_rate_hz // 100
    usable = len(samples) // step * step
    if usable == 0:
        return np.array([], dtype=np.int64)
    frames = samples[:usable].astype(np.float64).reshape(-1, step)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    if rms.max() <= 0:
        return np.array([], dtype=np.int64)
    return np.flatnonzero(rms > share * rms.max())


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float -1..1 to int16 with clipping; int16 passes through."""
    if samples.dtype == np.int16:
        return samples
    out: np.ndarray = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
    return out


def _as_float(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    return np.asarray(samples, dtype=np.float32)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV file (mono, or the first channel) as int16 samples and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        raw = w.readframes(w.getnframes())
        samples = np.frombuffer(raw, dtype="<i2").reshape(-1, w.getnchannels())[:, 0]
        return samples.astype(np.int16), w.getframerate()


def wav_bytes(samples: np.ndarray, sample_rate_hz: int) -> bytes:
    """Mono int16 samples as a complete WAV file in memory."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate_hz)
        w.writeframes(to_int16(samples).astype("<i2").tobytes())
    return buf.getvalue()


def parse_wav_header(data: bytes) -> tuple[int, int, int] | None:
    """(sample_rate_hz, channels, offset of PCM data) from the start of a streamed WAV.

    Streaming producers (espeak-ng ``--stdout``, GPT-SoVITS) write a placeholder data size, so
    the size fields are ignored. Returns None while ``data`` is too short to hold the header;
    raises InferenceError when it is not 16-bit PCM WAV.
    """
    if len(data) < 12:
        return None
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InferenceError("audio stream is not a WAV file")
    pos, rate, channels = 12, 0, 0
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk_id == b"data":
            if rate == 0:
                raise InferenceError("WAV stream has no fmt chunk before its data")
            return rate, channels, pos + 8
        if pos + 8 + size > len(data):
            return None
        if chunk_id == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[pos + 8 : pos + 24])
            if fmt != 1 or bits != 16:
                raise InferenceError(f"WAV stream is format {fmt}/{bits} bit, need PCM 16 bit")
        pos += 8 + size + (size & 1)
    return None
