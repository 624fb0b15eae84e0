"""One configured model inside the :class:`core.models.manager.ModelManager` and its bookkeeping.

Plain data plus tiny state transitions; every mutation happens under the manager's lock.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass
from typing import Any

from core.errors import ModelError
from core.models.base import ModelBackend
from core.models.registry import Factory
from core.models.settings import ModelsSettings


def remote_resource(name: str) -> str:
    """The scheduler resource bounding concurrent requests to a remote ``name`` model."""
    return f"remote:{name}"


@dataclass(slots=True, eq=False)
class ModelEntry:
    """One configured model and its bookkeeping (guarded by the manager's lock)."""

    name: str
    settings: Any  # the kind's settings: provider, device, footprint_mb, idle_unload_s
    factory: Factory
    device: str  # "cpu" or "cuda:N"
    footprint_mb: int
    idle_unload_s: float  # 0: never
    cpu_slot: bool = True  # CPU jobs take one 'cpu' slot (False: microsecond work, e.g. VAD)
    remote: bool = False  # a network service: ASYNC jobs holding one 'remote:<name>' unit
    in_worker: bool = False  # runs in a worker process: ASYNC jobs, its own resources as local
    concurrency: int = 0  # jobs using the loaded model at once: resource 'model:<name>' (0: off)
    kind: str = ""  # the model kind ("tts" for tts_remote): remote jobs hold 'remote:<kind>'
    working_mb: int = 0  # GPU memory per job on top of the weights (cuda only)
    backend: ModelBackend | None = None
    loaded: bool = False
    loading: concurrent.futures.Future[None] | None = None
    in_use: int = 0
    paused: int = 0  # of in_use: jobs paused by preemption (their model may be offloaded)
    offloaded: bool = False  # loaded, but the weights are in host memory (GPU only)
    offloading: concurrent.futures.Future[None] | None = None  # a worker's offload in flight
    uses: int = 0
    loads: int = 0  # successful loads; a change tells per-stream state to rebuild
    last_used_ts: float | None = None  # time.time() of the last release
    last_used_mono: float = 0.0  # time.monotonic(), for LRU and idle unload
    load_s: float | None = None
    measured_mb: float | None = None
    load_error: ModelError | None = None

    @classmethod
    def build(
        cls,
        name: str,
        settings: Any,
        factory: Factory,
        models: ModelsSettings,
        *,
        kind: str | None = None,
        remote: bool | None = None,
    ) -> ModelEntry:
        """``kind``/``remote``: for a model that is one part of a kind's settings (the remote
        routes of a mixed TTS routing table, ``tts_remote``); default: ``name`` / the settings."""
        kind = kind or name
        device = str(settings.device)
        device = "cuda:0" if device == "cuda" else device
        idle = settings.idle_unload_s
        if remote is None:
            remote = bool(getattr(settings, "remote", False))
        if remote and idle is None:
            idle = 0.0  # nothing to reclaim: keep the client (and its connections) warm
        if idle is None and models.warm(kind):
            idle = 0.0  # loaded at start-up to be ready: it stays loaded
        return cls(
            name=name,
            settings=settings,
            factory=factory,
            device=device,
            footprint_mb=int(settings.footprint_mb),
            idle_unload_s=models.default_idle_unload_s if idle is None else float(idle),
            cpu_slot=name not in models.no_cpu_slot,
            remote=remote,
            in_worker=not remote and getattr(settings, "placement", "inline") == "process",
            concurrency=0 if remote else models.concurrency.get(name, 0),
            kind=kind,
            working_mb=models.working_mb.get(name, 0) if device.startswith("cuda") else 0,
        )

    @property
    def gpu_resource(self) -> str | None:
        return f"vram:{self.device.split(':')[1]}" if self.device.startswith("cuda") else None

    @property
    def compute_resource(self) -> str | None:
        """The scheduler resource of its GPU's compute (``gpu:N``); None on CPU."""
        return f"gpu:{self.device.split(':')[1]}" if self.device.startswith("cuda") else None

    @property
    def model_resource(self) -> str | None:
        """The scheduler resource counting this model's concurrent jobs, if bounded."""
        return f"model:{self.name}" if self.concurrency > 0 else None

    @property
    def resources(self) -> dict[str, int]:
        if self.remote:
            return {remote_resource(self.kind or self.name): 1}
        # on a GPU a job takes the card's compute; its memory (the resident weights, once, plus
        # its working memory) is the manager's residency ledger, not a per-job charge
        gpu = self.compute_resource
        needs = {gpu: 1} if gpu is not None else {"cpu": 1} if self.cpu_slot else {}
        slot = self.model_resource
        if slot is not None:
            needs[slot] = 1
        return needs

    def acquire(self, now_mono: float) -> None:
        self.in_use += 1
        self.uses += 1
        self.last_used_mono = now_mono

    def release(self, now_ts: float, now_mono: float) -> None:
        self.in_use -= 1
        self.last_used_ts = now_ts
        self.last_used_mono = now_mono

    def load_succeeded(self, load_s: float, measured_mb: float | None) -> None:
        self.loaded, self.loading, self.load_error = True, None, None
        self.loads += 1
        self.load_s, self.measured_mb = load_s, measured_mb
        self.last_used_mono = time.monotonic()

    def load_failed(self, error: ModelError) -> None:
        self.loaded, self.loading, self.load_error = False, None, error

    def unloaded(self) -> None:
        self.loaded = self.offloaded = False

    def idle_expired(self, now_mono: float) -> bool:
        return (
            self.loaded
            and self.in_use == 0
            and self.idle_unload_s > 0
            and now_mono - self.last_used_mono >= self.idle_unload_s
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind or self.name,
            "provider": str(getattr(self.settings, "provider", "")),
            "device": "remote" if self.remote else self.device,
            "placement": "remote" if self.remote else "process" if self.in_worker else "inline",
            "loaded": self.loaded,
            "loading": self.loading is not None,
            "in_use": self.in_use,
            "paused": self.paused,
            "offloaded": self.offloaded,
            "working_mb": self.working_mb,
            "footprint_mb": self.footprint_mb,
            "measured_mb": None if self.measured_mb is None else round(self.measured_mb, 1),
            "load_s": None if self.load_s is None else round(self.load_s, 3),
            "last_used_ts": self.last_used_ts,
            "uses": self.uses,
            "loads": self.loads,
            "idle_unload_s": self.idle_unload_s,
            "load_error": None if self.load_error is None else self.load_error.message,
            "load_error_code": None if self.load_error is None else self.load_error.code,
            # loaded, but not as configured: e.g. whisper-base from memory on a full data dir
            "storage_error": getattr(self.backend, "storage_error", None),
        }
