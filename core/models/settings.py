"""Settings of the model backends (one slice of :class:`core.settings.Settings`).

One sub-object per model kind (its provider, device, declared ``footprint_mb`` and
``idle_unload_s``) plus the knobs of :class:`core.models.manager.ModelManager`.
``idle_unload_s`` of a kind: ``None`` takes ``default_idle_unload_s``; ``0`` never unloads.
With ``warm_start`` on, the ``warm_start_models`` load at start-up and (unless their own
``idle_unload_s`` says otherwise) stay loaded: the first voice turn after start or after a quiet
hour is as fast as any other.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from core.models.asr import AsrSettings
from core.models.llm import LlmSettings
from core.models.registry import MODEL_NAMES
from core.models.sd import SdSettings
from core.models.tts import TtsSettings
from core.models.vad import VadSettings
from core.models.vl import VlSettings
from core.scheduler.settings import SchedulerSettings


class RemoteSettings(BaseModel):
    """Budgets of the ``remote:<kind>`` scheduler resources: requests in flight at once to a
    remote model service (OpenAI-compatible, Ollama, Edge). These jobs run on the event loop
    and hold no thread and no ``cpu`` slot; the budget keeps a slow API from piling up."""

    llm_concurrency: int = Field(8, ge=1, description="remote:llm — chats in flight at once")
    asr_concurrency: int = Field(4, ge=1, description="remote:asr — transcriptions in flight")
    tts_concurrency: int = Field(8, ge=1, description="remote:tts — syntheses in flight")

    def resources(self) -> dict[str, int]:
        return {
            "remote:llm": self.llm_concurrency,
            "remote:asr": self.asr_concurrency,
            "remote:tts": self.tts_concurrency,
        }


class ModelsSettings(BaseModel):
    vad: VadSettings = Field(default_factory=VadSettings)
    asr: AsrSettings = Field(default_factory=AsrSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    vl: VlSettings = Field(default_factory=VlSettings)
    sd: SdSettings = Field(default_factory=SdSettings)

    default_idle_unload_s: float = Field(
        600.0, ge=0, description="idle unload for kinds whose idle_unload_s is None; 0: never"
    )
    idle_check_interval_s: float = Field(
        5.0, gt=0, description="longest gap between idle-unload sweeps"
    )
    no_cpu_slot: list[str] = Field(
        default_factory=lambda: ["vad"],
        description="models whose CPU jobs take no 'cpu' slot: microsecond work (VAD) that must "
        "never queue behind a long ASR/LLM job",
    )
    concurrency: dict[str, int] = Field(
        default_factory=lambda: {"asr": 1, "tts": 2, "llm": 1, "vl": 1, "sd": 1},
        description="jobs that may use one loaded model at once (one llama.cpp context, one "
        "CTranslate2 replica, one diffusers pipeline): the scheduler resource 'model:<name>', so "
        "a job starts only when its model is free; missing or 0: unbounded. Remote providers "
        "(llm.provider 'openai') take no model slot",
    )
    working_mb: dict[str, int] = Field(
        default_factory=lambda: {"asr": 256, "tts": 128, "llm": 512, "vl": 1024, "sd": 1536},
        description="GPU memory one job needs on top of its model's resident weights (activations,"
        " KV cache, latents), held while the job runs or is paused; only models on cuda count it",
    )
    gpu_compute_slots: int = Field(
        1,
        ge=1,
        le=64,
        description="jobs computing on one GPU at once: the scheduler resource 'gpu:N' (unless"
        " scheduler.resources sets it); a preempted GPU job gives it back at its next step",
    )
    vram_wait_timeout_s: float = Field(
        120.0,
        gt=0,
        description="a job waiting for room on its GPU (models in use hold it) fails with"
        " VramUnavailable (retryable) after this long",
    )
    close_timeout_s: float = Field(5.0, ge=0, description="close(): wait for the idle task")
    worker_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="CPU threads of each model worker process (OMP/MKL threads of torch): on a "
        "shared few-core box two busy threads per worker oversubscribe it (a tiny SD step "
        "measured 2-3 s instead of 0.1 s); raise it on a machine with cores to spare",
    )
    worker_start_timeout_s: float = Field(
        120.0, gt=0, description="a model worker process must answer within this after start"
    )
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    warm_start: bool = Field(
        True,
        description="load warm_start_models at start-up (readiness waits for them); false: "
        "every model loads on first use",
    )
    warm_start_models: list[str] = Field(
        default_factory=lambda: ["vad", "asr", "llm", "tts"],
        description="the models loaded at start-up (the embedded voice and chat defaults); "
        "they are not idle-unloaded unless their own idle_unload_s is set",
    )

    @field_validator("warm_start_models")
    @classmethod
    def _known_models(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown models {unknown}; known: {list(MODEL_NAMES)}")
        return list(dict.fromkeys(names))

    def warm(self, name: str) -> bool:
        """Whether ``name`` is loaded at start-up."""
        return self.warm_start and name in self.warm_start_models


def with_remote_resources(
    scheduler: SchedulerSettings, models: ModelsSettings
) -> SchedulerSettings:
    """The scheduler settings plus the ``remote:*`` budgets (entries already set there win)."""
    resources = {**models.remote.resources(), **scheduler.resources}
    return scheduler.model_copy(update={"resources": resources})


PROVIDER_KINDS = ("asr", "tts", "llm")  # kinds whose settings declare PROVIDER_FIELDS


def unselected_provider_settings(models: ModelsSettings) -> list[str]:
    """Settings changed from their default that only an unselected provider reads, e.g.
    ``models.llm.base_url`` while ``models.llm.provider`` is ``llamacpp`` (check-config warns)."""
    notes = []
    for kind in PROVIDER_KINDS:
        settings = getattr(models, kind)
        owners: dict[str, tuple[str, ...]] = getattr(type(settings), "PROVIDER_FIELDS", {})
        reads = getattr(settings, "reads", None)  # tts: the routes of provider auto read too
        for name, providers in owners.items():
            field = type(settings).model_fields.get(name)
            if field is None:
                continue
            read = reads(name) if reads is not None else settings.provider in providers
            if read:
                continue
            if getattr(settings, name) != field.get_default(call_default_factory=True):
                routed = [p for p in providers if p != "auto"]
                if settings.provider == "auto" and "auto" in providers and routed:
                    why = (
                        f"models.{kind}.provider is 'auto' and models.{kind}.languages routes"
                        f" no language to {' / '.join(routed)}"
                    )
                else:
                    why = f"models.{kind}.provider is {settings.provider!r}"
                notes.append(
                    f"models.{kind}.{name} is set but only provider {' / '.join(providers)}"
                    f" reads it ({why})"
                )
    return notes
