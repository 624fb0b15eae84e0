"""Microsoft Edge read-aloud voices through the ``edge-tts`` package (xiaozhi-esp32-server's
default voice is ``zh-CN-XiaoxiaoNeural``).

Each sentence is one ``edge_tts.Communicate(text, voice, rate=, volume=, pitch=)`` stream with
the voice of its language (``voices``: any hanzi → ``zh``, else ``en``). The package speaks
Edge's WebSocket protocol: a ``speech.config`` text message (output format
``audio-24khz-48kbitrate-mono-mp3``), an SSML message, then the service answers ``turn.start``,
binary ``Path:audio`` messages (a 2-byte header length, headers, MP3 bytes), metadata and
``turn.end``. The MP3 is decoded frame by frame as it arrives (:mod:`core.models.audio_stream`).

Endpoint seam: edge-tts has no URL parameter; ``Communicate`` reads the module global
``edge_tts.communicate.WSS_URL`` each time it connects. ``wss_url`` (a relay, or the tests'
loopback server) replaces that global at load and the package default is put back otherwise;
it is process-wide, which is fine because this backend is its only user.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator
from functools import partial
from typing import Any

import aiohttp

from core.errors import InferenceError, ModelLoadError
from core.models.audio_stream import StreamDecoder
from core.models.base import CancelCheck
from core.models.remote import RemoteBackend, RetryPolicy, with_retries
from core.models.tts import EdgeTtsSettings, PcmChunk, RemoteTts, language_of, split_sentences

SERVICE = "Edge TTS"
_RETRIES = RetryPolicy(max_retries=1, backoff_s=0.3)


def _edge() -> Any:
    try:
        import edge_tts
        import edge_tts.communicate
        import edge_tts.constants
    except ImportError as exc:  # pragma: no cover - edge-tts is a declared dependency
        raise ModelLoadError("tts.provider 'edge' needs the edge-tts package") from exc
    return edge_tts


class EdgeTts(RemoteBackend, RemoteTts):
    def __init__(self, settings: EdgeTtsSettings) -> None:
        super().__init__()
        self._settings = settings
        if not settings.voices:
            raise ModelLoadError("tts.edge.voices is empty: give at least one voice")

    def voice_for(self, text: str) -> str:
        voices = self._settings.voices
        return voices.get(language_of(text)) or next(iter(voices.values()))

    async def aload(self) -> None:
        edge = _edge()
        url = self._settings.wss_url
        if url is not None and "?TrustedClientToken=" not in url:
            raise ModelLoadError(
                f"tts.edge.wss_url must end in ?TrustedClientToken=..., got {url!r}"
            )
        edge.communicate.WSS_URL = url if url is not None else edge.constants.WSS_URL

    async def aclose(self) -> None:
        return None  # each sentence opens and closes its own WebSocket session

    async def asynthesize(
        self, text: str, *, sample_rate_hz: int
    ) -> AsyncGenerator[PcmChunk, None]:
        for sentence in split_sentences(text):
            attempt = partial(self._sentence, sentence, sample_rate_hz)
            async for chunk in with_retries(attempt, _RETRIES, SERVICE, "edge-tts"):
                yield chunk

    async def _sentence(self, sentence: str, sample_rate_hz: int) -> AsyncGenerator[PcmChunk, None]:
        edge = _edge()
        s = self._settings
        communicate = edge.Communicate(
            sentence,
            self.voice_for(sentence),
            rate=s.rate,
            volume=s.volume,
            pitch=s.pitch,
            proxy=s.proxy,
            connect_timeout=s.connect_timeout_s,
            receive_timeout=s.receive_timeout_s,
        )
        decoder = StreamDecoder("mp3", out_hz=sample_rate_hz)
        try:
            async with contextlib.aclosing(communicate.stream()) as messages:
                async for message in messages:
                    if message["type"] != "audio":
                        continue
                    samples = decoder.feed(message["data"])
                    if len(samples):
                        yield PcmChunk(samples, sample_rate_hz)
        except (
            TimeoutError,
            OSError,
            aiohttp.ClientError,
            edge.exceptions.EdgeTTSException,
        ) as exc:
            raise InferenceError(
                f"{SERVICE} failed for voice {self.voice_for(sentence)}: "
                f"{type(exc).__name__}: {exc}",
                retryable=True,
            ) from exc
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
