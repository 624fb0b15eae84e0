"""Module-level backend factories for worker-hosted models (pickled by reference, so a Ray
worker box builds the backend from its kind's settings; no Ray import here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.models.base import ModelBackend

# where an embedded model is assembled on a worker box (its working directory's data/)
WORKER_CACHE_DIR = Path("data") / "models"


def llm_backend(settings: Any) -> ModelBackend:
    from core.models.llm import create_llm

    return create_llm(settings, WORKER_CACHE_DIR)


def tts_backend(settings: Any) -> ModelBackend:
    from core.models.tts import create_tts

    # the box speaks the local voices; mixed remote routes stay with the front's tts_remote
    return create_tts(settings, "local" if settings.mixed_routes else "all")


def vl_backend(settings: Any) -> ModelBackend:
    from core.models.vl import create_vl

    return create_vl(settings)


def sd_backend(settings: Any) -> ModelBackend:
    from core.models.sd import create_sd

    return create_sd(settings)


# the model kinds a Ray worker may host (ASR and VAD stay on the front: realtime, small)
CLUSTER_FACTORIES = {"llm": llm_backend, "tts": tts_backend, "vl": vl_backend, "sd": sd_backend}
