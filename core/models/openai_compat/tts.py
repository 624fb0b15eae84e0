"""Speech through an OpenAI-compatible ``POST /v1/audio/speech``, decoded as it streams.

Request: ``{"model", "input", "voice", "response_format", "speed"}`` (plus ``extra_body``);
the voice is ``voices[language of the sentence]`` or ``voice``. The answer is audio bytes, sent
in chunks by servers that stream (OpenAI, Kokoro-FastAPI, openedai-speech) and at once by the
others: ``pcm`` is raw 16-bit mono at ``pcm_sample_rate_hz`` (24 kHz for OpenAI), ``wav`` a
WAV header then PCM, ``mp3`` MPEG frames (decoded with PyAV). Each chunk is decoded and
resampled as it arrives, so first audio waits for the first bytes, not the whole answer.
Text goes sentence by sentence (one request each), so a long reply starts after one sentence.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from functools import partial
from typing import Any

import httpx

from core.errors import ModelLoadError
from core.models.audio_stream import StreamDecoder
from core.models.base import CancelCheck
from core.models.remote import RemoteBackend, RetryPolicy, bearer, check_status, with_retries
from core.models.tts import (
    OpenAiTtsSettings,
    PcmChunk,
    RemoteTts,
    language_of,
    split_sentences,
)

SERVICE = "TTS server"
_CHUNK_BYTES = 4096


class OpenAiCompatTts(RemoteBackend, RemoteTts):
    def __init__(self, settings: OpenAiTtsSettings) -> None:
        super().__init__()
        self._settings = settings
        self._policy = RetryPolicy(settings.max_retries, settings.retry_backoff_s)

    @property
    def url(self) -> str:
        return self._settings.base_url.rstrip("/") + "/" + self._settings.path.lstrip("/")

    def new_http_client(self) -> httpx.AsyncClient:
        s = self._settings
        return httpx.AsyncClient(
            headers=bearer(s.api_key),
            timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
            trust_env=False,
        )

    async def aload(self) -> None:
        if not self._settings.base_url.startswith(("http://", "https://")):
            raise ModelLoadError(f"tts.openai.base_url is not an http(s) URL: {self.url}")

    def request_body(self, text: str) -> dict[str, Any]:
        s = self._settings
        body: dict[str, Any] = {
            "model": s.model,
            "input": text,
            "voice": s.voices.get(language_of(text), s.voice),
            "response_format": s.response_format,
            "speed": s.speed,
        }
        body.update(s.extra_body)
        return body

    async def asynthesize(
        self, text: str, *, sample_rate_hz: int
    ) -> AsyncGenerator[PcmChunk, None]:
        for sentence in split_sentences(text):
            body = self.request_body(sentence)
            attempt = partial(self._attempt, body, sample_rate_hz)
            async for chunk in with_retries(attempt, self._policy, SERVICE, self.url):
                yield chunk

    async def _attempt(
        self, body: dict[str, Any], sample_rate_hz: int
    ) -> AsyncGenerator[PcmChunk, None]:
        s = self._settings
        decoder = StreamDecoder(
            s.response_format, out_hz=sample_rate_hz, pcm_hz=s.pcm_sample_rate_hz
        )
        async with self.http().stream("POST", self.url, json=body) as response:
            await check_status(SERVICE, response)
            async for data in response.aiter_bytes(_CHUNK_BYTES):
                samples = decoder.feed(data)
                if len(samples):
                    yield PcmChunk(samples, sample_rate_hz)
        tail = decoder.flush()
        if len(tail):
            yield PcmChunk(tail, sample_rate_hz)

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        check()
        yield from self.blocking_stream(
            lambda: self.asynthesize(text, sample_rate_hz=sample_rate_hz), check
        )
