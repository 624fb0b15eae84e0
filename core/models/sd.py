"""Image generation: a prompt in, an encoded image out, with a callback at every step.

``SdSettings`` points at a local diffusers folder (SD 1.5 layout); :func:`create_sd` is the
explicit provider registry (torch/diffusers are imported only when the provider is built).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.errors import ModelNotConfigured
from core.models.base import CancelCheck, ModelBackend


@dataclass(frozen=True, slots=True)
class DrawRequest:
    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    guidance: float = 7.0
    seed: int | None = None


class ImageGenerator(ModelBackend):
    @abstractmethod
    def generate(self, request: DrawRequest, *, check: CancelCheck) -> bytes:
        """Return PNG bytes. ``check()`` runs at every denoising step: it raises on cancel
        and blocks while the scheduler has preempted the job (step-level preemption)."""


class SdSettings(BaseModel):
    """Stable Diffusion 1.5 (diffusers folder layout: model_index.json, unet/, vae/, ...)."""

    provider: Literal["diffusers"] = "diffusers"
    model_dir: Path | None = Field(None, description="diffusers pipeline folder")
    device: str = Field("cpu", pattern=r"^(cpu|cuda:\d+)$")
    placement: Literal["process", "inline"] = Field(
        "process",
        description="process: the model runs in its own worker process (a crash fails one job,"
        " torch never holds the service's loop); inline: on a thread of the service",
    )
    dtype: Literal["auto", "float32", "float16"] = Field(
        "auto", description="auto: float16 on cuda, float32 on cpu"
    )
    footprint_mb: int = Field(4000, ge=0, description="declared memory while loaded (VRAM on cuda)")
    idle_unload_s: float | None = Field(None, gt=0, description="None: the models default")
    scheduler: Literal["euler", "default"] = Field(
        "euler", description="euler: EulerDiscreteScheduler; default: the folder's own"
    )
    max_side_px: int = Field(1024, ge=64, description="largest width/height accepted")
    max_steps: int = Field(50, ge=1)


def sd_configured(settings: SdSettings) -> bool:
    """Whether weights are configured (without them every drawing fails at load)."""
    return settings.model_dir is not None


def create_sd(settings: SdSettings) -> ImageGenerator:
    """The explicit provider registry for image generators."""
    if settings.model_dir is None:
        raise ModelNotConfigured("sd: no model folder configured (set models.sd.model_dir)")
    from core.models.diffusers_sd.sd import DiffusersSd

    return DiffusersSd(settings)
