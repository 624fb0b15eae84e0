"""The composition root's bag of long-lived services, built once at start-up and passed down.

``core`` knows nothing of devices or bots; their directories are seen through small protocols
so the admin API can list them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.models.inference import Inference
    from core.models.manager import ModelManager
    from core.scheduler import Scheduler
    from core.settings import Settings
    from core.workers.ray_pool import RayPool


class Directory(Protocol):
    """Something that can list its live members as JSON-friendly dicts (devices, bots)."""

    def snapshot(self) -> list[dict[str, object]]: ...


class _Empty:
    def snapshot(self) -> list[dict[str, object]]:
        return []


@dataclass(slots=True)
class Services:
    settings: Settings
    scheduler: Scheduler
    models: ModelManager
    inference: Inference
    devices: Directory = field(default_factory=_Empty)
    bots: Directory = field(default_factory=_Empty)
    cluster: RayPool | None = None  # the Ray-hosted models (ray.address set), else None
    started_at: float = 0.0  # time.time() at start-up, for uptime
    # /admin/health sections by name, each a JSON-friendly snapshot; "state_errors" maps a
    # state file (quotas, device activations) to its last write error or None
    health: dict[str, Callable[[], dict[str, object]]] = field(default_factory=dict)
