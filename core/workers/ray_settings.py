"""Settings of the Ray scale-out (one slice of :class:`core.settings.Settings`).

Plain pydantic, no Ray import: single-box mode (``ray.address`` unset) never imports Ray.
With an address set, ``xiaoyou serve`` joins that Ray cluster as a driver and runs each entry
of ``workers`` as Ray actors hosting one model each; which model runs where is this
configuration, not code. A GPU box joins the cluster with
``ray start --address HEAD:6379 --resources '{"vram_mb": 8192}' --labels xiaoyou-node=gpu1``
(see docs/ray.md).

Scheduler resources (the scheduler stays the only place deciding priority, fairness and
admission; Ray only places actors and carries calls):

- ``worker:<name>`` = live replicas x ``concurrency``: a job on that worker starts only when a
  replica has a free slot, so calls never queue inside Ray (a sync actor runs queued calls
  even after they were cancelled, and Ray queues are FIFO);
- ``worker-bg:<name>`` = ``background_replicas`` x ``concurrency`` (only when set): what
  BACKGROUND jobs on that worker may hold at once, so the other replicas stay free for
  REALTIME and INTERACTIVE jobs;
- ``ray-node:<label>`` = ``nodes[label].slots``: the compute of one pinned box (one GPU), shared
  by every worker pinned to it, so a REALTIME chat on the box preempts a BACKGROUND drawing on
  the same box at its next step.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

NODE_LABEL = "xiaoyou-node"  # the Ray node label a box is started with (--labels)
VRAM_RESOURCE = "vram_mb"  # the Ray custom resource a box declares for its (first) GPU


def vram_resource(gpu: int | None) -> str:
    """The Ray custom resource of GPU ``gpu``'s memory: ``vram_mb`` (one GPU or the first),
    ``vram_mb_gpu1`` for the second, and so on."""
    return VRAM_RESOURCE if not gpu else f"{VRAM_RESOURCE}_gpu{gpu}"


class RayWorkerSettings(BaseModel):
    """One model hosted by Ray actors."""

    name: str = Field(
        ..., min_length=1, pattern=r"^[a-z0-9_.-]+$", description="the worker's name (actor name)"
    )
    model: Literal["llm", "tts", "vl", "sd"] = Field(
        ..., description="the model kind it hosts (its settings: models.<kind>)"
    )
    node: str | None = Field(
        None, description="pin to the box started with --labels xiaoyou-node=<node> (None: any)"
    )
    vram_mb: int = Field(
        0, ge=0, description="GPU memory the model holds while loaded (Ray places the actor)"
    )
    gpu: int | None = Field(
        None, ge=0, description="GPU index on the box (resource vram_mb / vram_mb_gpu<i>)"
    )
    num_cpus: float = Field(0.0, ge=0, description="Ray CPUs the actor reserves")
    replicas: int = Field(1, ge=1, le=64, description="actors of this model (spread by Ray)")
    concurrency: int = Field(1, ge=1, le=64, description="calls at once per replica")
    max_restarts: int = Field(
        -1, ge=-1, description="Ray restarts of a dead actor (-1: always, 0: never)"
    )
    background_replicas: int | None = Field(
        None,
        ge=1,
        description="replicas BACKGROUND jobs may occupy at once (None: all); the rest stay"
        " free for REALTIME and INTERACTIVE work, which then never waits behind a background"
        " job on this model (at the cost of background throughput)",
    )

    def ray_resources(self) -> dict[str, float]:
        if not self.vram_mb:
            return {}
        return {vram_resource(self.gpu): float(self.vram_mb)}

    def label_selector(self) -> dict[str, str] | None:
        return None if self.node is None else {NODE_LABEL: self.node}


class RayNodeSettings(BaseModel):
    slots: int = Field(1, ge=1, le=256, description="jobs at once on the box (1 per GPU)")


class RaySettings(BaseModel):
    address: str | None = Field(
        None, description="Ray head 'host:port' (GCS port, default 6379); None: single box"
    )
    auth_token: SecretStr | None = Field(
        None,
        description="the cluster's token (RAY_AUTH_TOKEN of every node; `ray get-auth-token`"
        " on the head prints it); None: Ray's own lookup (RAY_AUTH_TOKEN, ~/.ray/auth_token)",
    )
    namespace: str = Field("xiaoyou", min_length=1, description="Ray namespace of the actors")
    workers: list[RayWorkerSettings] = Field(default_factory=list)
    nodes: dict[str, RayNodeSettings] = Field(
        default_factory=dict, description="per-box compute slots (boxes named by their label)"
    )
    connect_timeout_s: float = Field(60.0, gt=0, description="ray.init at start-up")
    start_timeout_s: float = Field(
        120.0, gt=0, description="an actor (re)starting and loading its model"
    )
    call_timeout_s: float = Field(
        30.0, gt=0, description="no answer from a busy actor this long: it is taken as dead"
    )
    revive_interval_s: float = Field(
        2.0, gt=0, description="a dead replica is probed this often until it is back"
    )

    @model_validator(mode="after")
    def _check(self) -> RaySettings:
        names = [w.name for w in self.workers]
        if len(names) != len(set(names)):
            raise ValueError(f"ray.workers names must be unique: {names}")
        models = [w.model for w in self.workers]
        if len(models) != len(set(models)):
            raise ValueError(f"one ray.workers entry per model (use replicas): {models}")
        return self

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def worker_for(self, model: str) -> RayWorkerSettings | None:
        for worker in self.workers:
            if worker.model == model:
                return worker
        return None

    def node_slots(self, label: str) -> int:
        node = self.nodes.get(label)
        return node.slots if node is not None else 1
