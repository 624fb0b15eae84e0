"""What operators see of the Ray pool: boxes, their resources, replicas, problems.

:class:`core.workers.ray_pool.RayPool` refreshes the cluster's node table with
:func:`read_nodes` (a blocking GCS query: run off the loop, from the pool's reviver, every
``revive_interval_s``), so ``/admin/workers`` and ``/admin/health`` read a cached view and never
wait on Ray. A *box* is a node label (``xiaoyou-node``) or, unlabelled, the node's address: a
box restarted by its operator joins as a new Ray node (a new id) under the same box name, and
a box that was seen alive and has no alive node now is *lost* (health turns "degraded").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.workers.base import WorkerState
from core.workers.ray_settings import NODE_LABEL, VRAM_RESOURCE

# a replica's state as operators read it (WorkerState is the worker's own, finer one)
REPLICA_ALIVE, REPLICA_RESTARTING, REPLICA_DEAD = "alive", "restarting", "dead"
REPLICA_STARTING, REPLICA_STOPPED = "starting", "stopped"


def replica_state(state: WorkerState, starts: int) -> str:
    if state in (WorkerState.IDLE, WorkerState.BUSY):
        return REPLICA_ALIVE
    if state is WorkerState.STOPPED:
        return REPLICA_STOPPED
    if state in (WorkerState.NEW, WorkerState.STARTING):
        return REPLICA_RESTARTING if starts else REPLICA_STARTING
    return REPLICA_DEAD


def _shown(resource: str) -> bool:
    """The resources an operator cares about (not Ray's ``node:<ip>`` bookkeeping ones)."""
    return resource in ("CPU", "GPU", "memory") or resource.startswith(VRAM_RESOURCE)


@dataclass(slots=True)
class NodeView:
    node_id: str
    box: str
    address: str
    alive: bool
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_ray(cls, raw: dict[str, Any]) -> NodeView:
        labels = {str(k): str(v) for k, v in (raw.get("Labels") or {}).items()}
        labels = {k: v for k, v in labels.items() if not k.startswith("ray.io/")}
        address = str(raw.get("NodeManagerAddress", ""))
        resources = {
            str(k): round(float(v), 1)
            for k, v in (raw.get("Resources") or {}).items()
            if _shown(str(k))
        }
        if "memory" in resources:  # bytes -> MB, the unit of vram_mb
            resources["memory_mb"] = round(resources.pop("memory") / 1e6, 1)
        return cls(
            node_id=str(raw.get("NodeID", "")),
            box=labels.get(NODE_LABEL) or address,
            address=address,
            alive=bool(raw.get("Alive", False)),
            labels=labels,
            resources=resources,
        )


def read_nodes() -> list[NodeView]:
    """The cluster's node table (blocking: a GCS round trip; call it off the loop). Ray's
    failures come out as ConnectionError."""
    import ray
    from ray.exceptions import RayError

    try:
        table = ray.nodes()  # type: ignore[no-untyped-call]
    except RayError as exc:
        raise ConnectionError(f"ray.nodes(): {exc}") from exc
    return [NodeView.from_ray(raw) for raw in table]


@dataclass(slots=True)
class BoxBook:
    """The node table as last read, and the boxes seen alive since start-up."""

    nodes: list[NodeView] = field(default_factory=list)
    seen_alive: set[str] = field(default_factory=set)
    read_error: str | None = None  # the last read_nodes() failure (GCS unreachable)

    def update(self, nodes: list[NodeView]) -> None:
        self.nodes, self.read_error = nodes, None
        self.seen_alive.update(n.box for n in nodes if n.alive)

    def alive_boxes(self) -> set[str]:
        return {n.box for n in self.nodes if n.alive}

    def lost_boxes(self) -> list[str]:
        return sorted(self.seen_alive - self.alive_boxes())

    def shown_nodes(self) -> list[NodeView]:
        """Alive nodes, plus one dead node per lost box (Ray keeps every dead node's entry: a
        box restarted three times would show three dead nodes otherwise)."""
        alive = self.alive_boxes()
        shown = [n for n in self.nodes if n.alive]
        lost: dict[str, NodeView] = {}
        for node in self.nodes:
            if not node.alive and node.box not in alive and node.box in self.seen_alive:
                lost[node.box] = node
        return shown + list(lost.values())
