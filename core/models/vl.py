"""Vision-language: an image and a question in, text out.

``VlSettings`` points at a local model folder; :func:`create_vl` is the explicit provider
registry (the provider module, and with it torch/transformers, is imported only when chosen).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.errors import ModelNotConfigured
from core.models.base import CancelCheck, ModelBackend


class VisionLanguage(ModelBackend):
    @abstractmethod
    def answer(
        self,
        image: bytes,
        question: str,
        *,
        max_tokens: int,
        check: CancelCheck,
        emit: Callable[[str], None] | None = None,
    ) -> str:
        """``image``: encoded bytes (PNG/JPEG/...); ``emit``: called with each new piece of
        the answer's text as tokens are generated (streaming); the whole answer is returned."""


class VlSettings(BaseModel):
    """Qwen2-VL / Qwen2.5-VL from a local transformers folder (no hub access)."""

    provider: Literal["qwen2vl"] = "qwen2vl"
    model_dir: Path | None = Field(None, description="folder with config.json, weights, tokenizer")
    device: str = Field("cpu", pattern=r"^(cpu|cuda:\d+)$")
    placement: Literal["process", "inline"] = Field(
        "process",
        description="process: the model runs in its own worker process (a crash fails one job,"
        " torch never holds the service's loop); inline: on a thread of the service",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on cuda, float32 on cpu"
    )
    footprint_mb: int = Field(5000, ge=0, description="declared memory while loaded (VRAM on cuda)")
    idle_unload_s: float | None = Field(None, gt=0, description="None: the models default")
    max_tokens: int = Field(128, ge=1)
    min_pixels: int = Field(28 * 28 * 4, ge=28 * 28, description="image resize floor")
    max_pixels: int = Field(
        28 * 28 * 640, ge=28 * 28, description="image resize cap (tokens ~ px/784)"
    )
    system_prompt: str = "You are a helpful assistant."


def vl_configured(settings: VlSettings) -> bool:
    """Whether weights are configured (without them every question fails at load)."""
    return settings.model_dir is not None


def create_vl(settings: VlSettings) -> VisionLanguage:
    """The explicit provider registry for vision-language models."""
    if settings.model_dir is None:
        raise ModelNotConfigured("vl: no model folder configured (set models.vl.model_dir)")
    from core.models.qwen2vl.vl import Qwen2Vl

    return Qwen2Vl(settings)
