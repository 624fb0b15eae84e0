"""GPT-SoVITS TTS over HTTP: the api_v2 ``POST /tts`` endpoint, streamed WAV response.

Request body (api_v2.py): ``text``, ``text_lang``, ``ref_audio_path``, ``prompt_text``,
``prompt_lang``, ``text_split_method``, ``speed_factor``, ``media_type``, ``streaming_mode``.
With ``media_type="wav"`` and ``streaming_mode`` on, the server sends one WAV header (with a
placeholder size) and then raw 16-bit PCM as it is generated; errors come back as HTTP 400
with a JSON ``message``. The header's sample rate (32 kHz for v2 models, 24/48 kHz for v3/v4)
drives the resampler. ``check()`` runs before each network chunk, so cancel closes the stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np

from core.errors import InferenceError, ModelLoadError
from core.models.audio import Resampler, parse_wav_header, to_int16
from core.models.base import CancelCheck
from core.models.tts import GptSovitsSettings, PcmChunk, Tts

_CHUNK_BYTES = 8192


class GptSovitsTts(Tts):
    def __init__(self, settings: GptSovitsSettings) -> None:
        self._settings = settings
        self._client: httpx.Client | None = None

    def load(self) -> None:
        if not self._settings.ref_audio_path:
            raise ModelLoadError("gptsovits needs tts.gptsovits.ref_audio_path (reference audio)")
        if not self._settings.base_url.startswith(("http://", "https://")):
            raise ModelLoadError(
                f"gptsovits base_url is not an http URL: {self._settings.base_url}"
            )
        timeout = httpx.Timeout(
            self._settings.read_timeout_s, connect=self._settings.connect_timeout_s
        )
        self._client = httpx.Client(
            base_url=self._settings.base_url, timeout=timeout, trust_env=False
        )

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def request_body(self, text: str) -> dict[str, object]:
        s = self._settings
        return {
            "text": text,
            "text_lang": s.text_lang,
            "ref_audio_path": s.ref_audio_path,
            "prompt_text": s.prompt_text,
            "prompt_lang": s.prompt_lang,
            "text_split_method": s.text_split_method,
            "speed_factor": s.speed_factor,
            "media_type": "wav",
            "streaming_mode": s.streaming_mode,
        }

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        if self._client is None:
            raise ModelLoadError("gptsovits TTS used before load()")
        check()
        try:
            with self._client.stream("POST", "/tts", json=self.request_body(text)) as response:
                if response.status_code != 200:
                    response.read()
                    raise InferenceError(
                        f"GPT-SoVITS answered {response.status_code}: {_error_message(response)}",
                        retryable=response.status_code >= 500,
                    )
                yield from self._decode(response.iter_bytes(_CHUNK_BYTES), sample_rate_hz, check)
        except httpx.TransportError as e:
            raise InferenceError(
                f"GPT-SoVITS at {self._settings.base_url} unreachable: {e}", retryable=True
            ) from e

    def _decode(
        self, stream: Iterator[bytes], sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        pending = b""
        resampler: Resampler | None = None
        header: tuple[int, int, int] | None = None
        channels = 1
        for data in stream:
            check()
            pending += data
            if header is None:
                header = parse_wav_header(pending)
                if header is None:
                    continue
                rate_hz, channels, offset = header
                pending = pending[offset:]
                if rate_hz != sample_rate_hz:
                    resampler = Resampler(rate_hz, sample_rate_hz)
            frame_bytes = 2 * channels
            usable = len(pending) - len(pending) % frame_bytes
            if usable == 0:
                continue
            samples = np.frombuffer(pending[:usable], dtype="<i2").reshape(-1, channels)[:, 0]
            pending = pending[usable:]
            out = resampler.process(samples) if resampler else samples.astype(np.int16)
            if len(out):
                yield PcmChunk(to_int16(out), sample_rate_hz)
        if header is None:
            raise InferenceError("GPT-SoVITS returned no WAV audio")
        if resampler is not None:
            tail = resampler.flush()
            if len(tail):
                yield PcmChunk(to_int16(tail), sample_rate_hz)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message", body))[:200]
    return str(body)[:200]
