"""``/admin/workers``: where model work runs outside the front's own threads.

Two kinds: the local worker processes of models placed with ``placement = "process"`` (one
child process per model, see :mod:`core.workers.process`) and, with ``ray.address`` set, the
Ray pool (:meth:`core.workers.ray_pool.RayPool.snapshot`: boxes, their resources, the actors
on them, replicas per model with their state, running jobs and last error). Both are read
from state the services keep anyway: the route never waits on a child or on Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.services import Services


def process_workers(services: Services) -> list[dict[str, object]]:
    """One row per worker-placed model; ``state`` "new" until its first use starts it."""
    from core.workers.hosted import WorkerModel

    models = services.models
    rows: list[dict[str, object]] = []
    for row in models.snapshot():
        if row.get("placement") != "process":
            continue
        name = str(row["name"])
        backend = models.entry(name).backend
        worker = backend.worker if isinstance(backend, WorkerModel) else None
        rows.append(
            {
                "model": name,
                "loaded": row.get("loaded"),
                "state": worker.state.value if worker is not None else "new",
                "pid": getattr(worker, "pid", None),
                "starts": getattr(worker, "starts", 0),
                "restarts": backend.restarts if isinstance(backend, WorkerModel) else 0,
                "load_s": backend.load_s if isinstance(backend, WorkerModel) else None,
                "measured_mb": backend.measured_mb if isinstance(backend, WorkerModel) else None,
            }
        )
    return rows


def workers_view(services: Services) -> dict[str, object]:
    cluster = services.cluster
    return {
        "process": process_workers(services),
        "ray": cluster.snapshot() if cluster is not None else None,
    }


def ray_health(services: Services) -> dict[str, object] | None:
    """The /admin/health section of the Ray pool (None in single-box mode)."""
    cluster = services.cluster
    return cluster.health() if cluster is not None else None
