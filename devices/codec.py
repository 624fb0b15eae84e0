"""Opus for the device link (``opuslib_next``): decode 16 kHz uplink, encode 60 ms downlink frames.

One encoder and one decoder per stream (Opus is stateful). Encode/decode cost ~0.4/0.1 ms per
60 ms frame, so both run inline on the event loop; no thread per device.
"""

from __future__ import annotations

import numpy as np
import opuslib_next

from core.errors import ProtocolError

FRAME_MS = 60  # the firmware's OPUS_FRAME_DURATION_MS
_MAX_PACKET_MS = 120  # the longest Opus packet; decode buffers are sized for it
_MAX_PACKET_BYTES = 4000  # libopus' recommended max packet size


class InvalidOpus(ProtocolError):
    code = "invalid_opus"


def frame_samples(sample_rate_hz: int, frame_ms: int = FRAME_MS) -> int:
    return sample_rate_hz * frame_ms // 1000


class OpusDecoder:
    """Opus packets in, int16 mono PCM out."""

    __slots__ = ("_decoder", "_max_samples", "sample_rate_hz")

    def __init__(self, sample_rate_hz: int = 16_000) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._decoder = opuslib_next.Decoder(sample_rate_hz, 1)
        self._max_samples = frame_samples(sample_rate_hz, _MAX_PACKET_MS)

    def decode(self, packet: bytes) -> np.ndarray:
        if not packet:
            raise InvalidOpus("empty Opus packet")
        try:
            pcm = self._decoder.decode(bytes(packet), self._max_samples)
        except opuslib_next.OpusError as exc:
            raise InvalidOpus(f"invalid Opus packet of {len(packet)} bytes: {exc}") from exc
        return np.frombuffer(pcm, dtype=np.int16).copy()


class OpusEncoder:
    """int16 mono PCM of any length in, whole ``frame_ms`` Opus packets out (remainder kept)."""

    __slots__ = ("_encoder", "_pending", "frame_ms", "frame_samples", "sample_rate_hz")

    def __init__(
        self,
        sample_rate_hz: int = 24_000,
        frame_ms: int = FRAME_MS,
        *,
        bitrate_bps: int | None = None,
    ) -> None:
        if sample_rate_hz not in (8_000, 12_000, 16_000, 24_000, 48_000):
            raise ValueError(f"Opus does not support {sample_rate_hz} Hz")
        self.sample_rate_hz = sample_rate_hz
        self.frame_ms = frame_ms
        self.frame_samples = frame_samples(sample_rate_hz, frame_ms)
        self._encoder = opuslib_next.Encoder(sample_rate_hz, 1, opuslib_next.APPLICATION_VOIP)
        if bitrate_bps is not None:
            self._encoder.bitrate = bitrate_bps
        self._pending = np.zeros(0, dtype=np.int16)

    def encode(self, samples: np.ndarray) -> list[bytes]:
        """Append ``samples`` and return every whole frame now available."""
        pcm = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16)])
        whole = len(pcm) // self.frame_samples
        packets = [
            self._encoder.encode(
                pcm[i * self.frame_samples : (i + 1) * self.frame_samples].tobytes(),
                self.frame_samples,
            )
            for i in range(whole)
        ]
        self._pending = pcm[whole * self.frame_samples :]
        return packets

    def flush(self) -> list[bytes]:
        """Pad the remainder with silence to one last frame (nothing if no remainder)."""
        if len(self._pending) == 0:
            return []
        pad = np.zeros(self.frame_samples - len(self._pending), dtype=np.int16)
        return self.encode(pad)


def resample_linear(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Linear-interpolation resampling of int16 mono (adequate for test audio and the simulator)."""
    if from_hz == to_hz or len(samples) == 0:
        return np.asarray(samples, dtype=np.int16)
    n_out = round(len(samples) * to_hz / from_hz)
    x_out = np.arange(n_out, dtype=np.float64) * (from_hz / to_hz)
    out = np.interp(x_out, np.arange(len(samples), dtype=np.float64), samples.astype(np.float64))
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)
