"""Image generation: a prompt in, an encoded image out, with a callback at every step."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

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
