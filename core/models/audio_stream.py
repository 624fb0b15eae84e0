"""Incremental decoders for audio that network TTS services stream: raw PCM, WAV and MP3.

    decoder = StreamDecoder("mp3", out_hz=24_000)
    for data in response_chunks:
        samples = decoder.feed(data)          # int16 mono at out_hz, possibly empty
    tail = decoder.flush()

MP3 (Edge TTS, many OpenAI-compatible servers) is parsed and decoded frame by frame with PyAV
(FFmpeg's decoder), so audio reaches the device while the rest is still arriving; raw PCM and
WAV go through the polyphase :class:`core.models.audio.Resampler` when the rates differ.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from core.errors import InferenceError
from core.models.audio import Resampler, parse_wav_header, to_int16

AudioFormat = Literal["pcm", "wav", "mp3"]
_EMPTY = np.zeros(0, dtype=np.int16)


class StreamDecoder:
    def __init__(self, fmt: AudioFormat, *, out_hz: int, pcm_hz: int = 24_000) -> None:
        self.fmt = fmt
        self.out_hz = out_hz
        self._pending = b""
        self._resampler: Resampler | None = None
        self._header_done = fmt != "wav"
        self._channels = 1
        self._mp3: Any = None
        self._mp3_resampler: Any = None
        self.samples_out = 0
        if fmt == "pcm" and pcm_hz != out_hz:
            self._resampler = Resampler(pcm_hz, out_hz)
        if fmt == "mp3":
            import av  # PyAV (FFmpeg); faster-whisper depends on it too

            self._mp3 = av.CodecContext.create("mp3", "r")
            self._mp3_resampler = av.AudioResampler(format="s16", layout="mono", rate=out_hz)

    def feed(self, data: bytes) -> np.ndarray:
        out = self._mp3_feed(data) if self._mp3 is not None else self._pcm_feed(data)
        self.samples_out += len(out)
        return out

    def flush(self) -> np.ndarray:
        if self._mp3 is not None:
            out = self._mp3_flush()
        else:
            if not self._header_done:
                raise InferenceError("TTS server sent no WAV header")
            out = to_int16(self._resampler.flush()) if self._resampler is not None else _EMPTY
        self.samples_out += len(out)
        return out

    # -- pcm / wav -----------------------------------------------------------------------------
    def _pcm_feed(self, data: bytes) -> np.ndarray:
        self._pending += data
        if not self._header_done:
            header = parse_wav_header(self._pending)
            if header is None:
                return _EMPTY
            rate_hz, self._channels, offset = header
            self._pending = self._pending[offset:]
            self._header_done = True
            if rate_hz != self.out_hz:
                self._resampler = Resampler(rate_hz, self.out_hz)
        frame_bytes = 2 * self._channels
        usable = len(self._pending) - len(self._pending) % frame_bytes
        if usable == 0:
            return _EMPTY
        samples = np.frombuffer(self._pending[:usable], dtype="<i2").reshape(-1, self._channels)
        self._pending = self._pending[usable:]
        mono = samples[:, 0]
        if self._resampler is not None:
            return to_int16(self._resampler.process(mono))
        return mono.astype(np.int16)

    # -- mp3 -----------------------------------------------------------------------------------
    def _mp3_feed(self, data: bytes) -> np.ndarray:
        try:
            return self._mp3_decode(self._mp3.parse(data))
        except Exception as exc:
            raise InferenceError(f"TTS server sent undecodable MP3: {exc}") from exc

    def _mp3_flush(self) -> np.ndarray:
        try:
            parts = [self._mp3_decode(self._mp3.parse(b""))]
            parts += [self._resampled(frame) for frame in self._mp3.decode(None)]
            parts += [_frames(self._mp3_resampler.resample(None))]
        except Exception as exc:
            raise InferenceError(f"TTS server sent undecodable MP3: {exc}") from exc
        return np.concatenate(parts) if parts else _EMPTY

    def _mp3_decode(self, packets: list[Any]) -> np.ndarray:
        parts = [self._resampled(frame) for packet in packets for frame in self._mp3.decode(packet)]
        return np.concatenate(parts) if parts else _EMPTY

    def _resampled(self, frame: Any) -> np.ndarray:
        return _frames(self._mp3_resampler.resample(frame))


def _frames(frames: list[Any]) -> np.ndarray:
    if not frames:
        return _EMPTY
    out: np.ndarray = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    return out.astype(np.int16)
