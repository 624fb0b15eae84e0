"""Qwen2-VL / Qwen2.5-VL answering questions about one image, via transformers.

Everything loads from ``model_dir`` with ``local_files_only=True``. The prompt is built here in
the Qwen chat format (the Qwen processor class cannot be constructed without torchvision, which
this deployment does not carry): the PIL image processor yields patches and a grid, and the one
``<|image_pad|>`` placeholder is expanded to ``grid.prod() / merge_size**2`` tokens, exactly
what the processor would do. ``check()`` runs before every generated token; ``emit``, when
given, receives the answer's text piece by piece (a transformers TextStreamer).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from core.errors import InferenceError, ModelLoadError
from core.models.base import CancelCheck
from core.models.vl import VisionLanguage, VlSettings

_MODEL_CLASSES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
}
_IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


class Qwen2Vl(VisionLanguage):
    pause_keeps_model = False  # generate() keeps its KV cache in its own frame
    offloadable = True  # the weights move to host memory while every job on them is paused

    def __init__(self, settings: VlSettings) -> None:
        if settings.model_dir is None:
            raise ModelLoadError("vl: model_dir is not set")
        self._settings = settings
        self._dir = settings.model_dir
        self._model: Any = None
        self._tokenizer: Any = None
        self._image_processor: Any = None

    def load(self) -> None:
        config_path = self._dir / "config.json"
        if not config_path.is_file():
            raise ModelLoadError(f"vl: {config_path} not found")
        try:
            model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"vl: unreadable {config_path}: {exc}") from exc
        if model_type not in _MODEL_CLASSES:
            raise ModelLoadError(f"vl: model_type {model_type!r} is not Qwen2-VL / Qwen2.5-VL")
        try:
            import torch
            import transformers
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
                Qwen2VLImageProcessorPil,
            )
        except ImportError as exc:
            raise ModelLoadError(
                f"vl needs torch and transformers (extra 'vision'): {exc}"
            ) from exc
        model_cls = getattr(transformers, _MODEL_CLASSES[model_type])
        dtype = _torch_dtype(torch, self._settings.dtype, self._settings.device)
        try:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(
                self._dir, local_files_only=True
            )
            self._image_processor = Qwen2VLImageProcessorPil.from_pretrained(
                self._dir,
                local_files_only=True,
                min_pixels=self._settings.min_pixels,
                max_pixels=self._settings.max_pixels,
            )
            model = model_cls.from_pretrained(self._dir, local_files_only=True, dtype=dtype)
            self._model = model.to(self._settings.device).eval()
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            self.unload()
            raise ModelLoadError(f"vl: could not load {self._dir}: {exc}") from exc

    def unload(self) -> None:
        self._model = self._tokenizer = self._image_processor = None

    def offload(self) -> None:
        """The weights to host memory (``model.to("cpu")``); a paused generate()'s KV cache
        stays on the device (its job's working memory)."""
        if self._model is not None:
            self._model.to("cpu")

    def restore(self) -> None:
        if self._model is not None:
            self._model.to(self._settings.device)

    def answer(
        self,
        image: bytes,
        question: str,
        *,
        max_tokens: int,
        check: CancelCheck,
        emit: Callable[[str], None] | None = None,
    ) -> str:
        # no lock: the scheduler's model resource admits one job at a time
        return self._answer(image, question, max_tokens, check, emit)

    def _answer(
        self,
        image: bytes,
        question: str,
        max_tokens: int,
        check: CancelCheck,
        emit: Callable[[str], None] | None,
    ) -> str:
        if self._model is None:
            raise InferenceError("vl model is not loaded")
        import torch
        from PIL import Image, UnidentifiedImageError
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        class _Pieces(TextStreamer):
            """Decoded text as it is generated, to ``emit`` (instead of printing it)."""

            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text and emit is not None:
                    emit(text)

        class _Check(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                check()  # raises JobCancelled / blocks while preempted
                return False

        try:
            picture = Image.open(io.BytesIO(image)).convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise InferenceError(f"vl: not a readable image: {exc}") from exc
        check()
        features = self._image_processor(images=[picture], return_tensors="pt")
        merge = int(self._image_processor.merge_size) ** 2
        n_image_tokens = int(features["image_grid_thw"][0].prod()) // merge
        prompt = self._prompt(question).replace(
            "<|image_pad|>", "<|image_pad|>" * n_image_tokens, 1
        )
        encoded = self._tokenizer(prompt, return_tensors="pt")
        device = self._settings.device
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=encoded["input_ids"].to(device),
                attention_mask=encoded["attention_mask"].to(device),
                pixel_values=features["pixel_values"].to(device, self._model.dtype),
                image_grid_thw=features["image_grid_thw"].to(device),
                max_new_tokens=max_tokens,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([_Check()]),
                pad_token_id=self._tokenizer.pad_token_id,
                streamer=None
                if emit is None
                else _Pieces(self._tokenizer, skip_prompt=True, skip_special_tokens=True),
            )
        new_tokens = output[0, encoded["input_ids"].shape[1] :]
        return str(self._tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()

    def _prompt(self, question: str) -> str:
        system = self._settings.system_prompt
        head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
        return (
            f"{head}<|im_start|>user\n{_IMAGE_PLACEHOLDER}{question}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )


def _torch_dtype(torch: Any, name: str, device: str) -> Any:
    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)
