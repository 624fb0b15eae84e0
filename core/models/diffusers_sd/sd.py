"""Stable Diffusion 1.5 through diffusers' StableDiffusionPipeline, from a local folder.

``callback_on_step_end`` calls ``check()`` at every denoising step: on cancel it raises out of
the pipeline, under preemption it blocks there until the scheduler resumes the job (meanwhile
the manager may :meth:`DiffusersSd.offload` the pipeline to host memory; it is restored before
the callback returns). The image is
generated at the nearest multiple of 8 and returned as PNG bytes of exactly the requested size.
"""

from __future__ import annotations

import io
from typing import Any

from core.errors import InferenceError, ModelLoadError
from core.models.base import CancelCheck
from core.models.sd import DrawRequest, ImageGenerator, SdSettings

_SIDE_MULTIPLE_PX = 8  # SD's VAE downsamples by 8; the pipeline rejects other sizes


class DiffusersSd(ImageGenerator):
    offloadable = True  # the pipeline moves to host memory while its job is paused

    def __init__(self, settings: SdSettings) -> None:
        if settings.model_dir is None:
            raise ModelLoadError("sd: model_dir is not set")
        self._settings = settings
        self._dir = settings.model_dir
        self._pipe: Any = None

    def load(self) -> None:
        if not (self._dir / "model_index.json").is_file():
            raise ModelLoadError(f"sd: {self._dir} is not a diffusers folder (no model_index.json)")
        try:
            import torch
            from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
        except ImportError as exc:
            raise ModelLoadError(
                f"sd needs torch and diffusers (extra 'diffusion'): {exc}"
            ) from exc
        device = self._settings.device
        dtype_name = self._settings.dtype
        if dtype_name == "auto":
            dtype_name = "float16" if device.startswith("cuda") else "float32"
        try:
            pipe = StableDiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
                self._dir,
                local_files_only=True,
                dtype=getattr(torch, dtype_name),
                safety_checker=None,
                requires_safety_checker=False,
            )
            if self._settings.scheduler == "euler":
                config = pipe.scheduler.config
                pipe.scheduler = EulerDiscreteScheduler.from_config(config)  # type: ignore[no-untyped-call]
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe.to(device)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelLoadError(f"sd: could not load {self._dir}: {exc}") from exc

    def unload(self) -> None:
        self._pipe = None

    def offload(self) -> None:
        """The pipeline's weights to host memory (diffusers ``pipe.to("cpu")``); the paused
        job's latents stay where they are (its working memory)."""
        if self._pipe is not None:
            self._pipe.to("cpu")

    def restore(self) -> None:
        if self._pipe is not None:
            self._pipe.to(self._settings.device)

    def generate(self, request: DrawRequest, *, check: CancelCheck) -> bytes:
        self._validate(request)
        # no lock: the scheduler's model resource admits one job at a time
        return self._generate(request, check)

    def _validate(self, request: DrawRequest) -> None:
        limit = self._settings.max_side_px
        if not (
            _SIDE_MULTIPLE_PX <= request.width <= limit
            and _SIDE_MULTIPLE_PX <= request.height <= limit
        ):
            raise InferenceError(f"sd: size {request.width}x{request.height} outside 8..{limit} px")
        if not 1 <= request.steps <= self._settings.max_steps:
            raise InferenceError(f"sd: steps {request.steps} outside 1..{self._settings.max_steps}")

    def _generate(self, request: DrawRequest, check: CancelCheck) -> bytes:
        if self._pipe is None:
            raise InferenceError("sd model is not loaded")
        import torch

        def on_step_end(
            pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]
        ) -> dict[str, Any]:
            check()  # raises JobCancelled; blocks while the scheduler has preempted the job
            return tensors

        width, height = (_round_up(side) for side in (request.width, request.height))
        generator = None
        if request.seed is not None:
            generator = torch.Generator(device="cpu").manual_seed(request.seed)
        check()
        with torch.inference_mode():
            result = self._pipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                width=width,
                height=height,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=generator,
                callback_on_step_end=on_step_end,
            )
        image = result.images[0]
        if image.size != (request.width, request.height):
            image = image.resize((request.width, request.height))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


def _round_up(side_px: int) -> int:
    return -(-side_px // _SIDE_MULTIPLE_PX) * _SIDE_MULTIPLE_PX
