"""Vision-language: an image and a question in, text out."""

from __future__ import annotations

from abc import abstractmethod

from core.models.base import CancelCheck, ModelBackend


class VisionLanguage(ModelBackend):
    @abstractmethod
    def answer(self, image: bytes, question: str, *, max_tokens: int, check: CancelCheck) -> str:
        """``image``: encoded bytes (PNG/JPEG/...)."""
