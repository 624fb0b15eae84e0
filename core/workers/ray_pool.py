"""The front's Ray workers: connection, replicas, scheduler resources, revival (Ray only).

Built by the composition root when ``ray.address`` is set. For each ``ray.workers`` entry it
starts ``replicas`` actors (:class:`core.workers.ray_worker.RayWorker`) and defines scheduler
resources, so priority, fairness and admission stay with :class:`core.scheduler.Scheduler`:

- ``worker:<name>`` = live replicas x concurrency. A job on the model takes one unit, and
  :meth:`RayPool.call` runs it on a replica with a free slot (the count guarantees one). A
  replica that dies fails its running call with WorkerDied and leaves the count until it is
  back (an idle replica is pinged every ``revive_interval_s``, so one that died idle leaves
  too; with no replica live the count stays at one replica's worth: jobs then fail at once
  with WorkerDied, retryable, rather than wait for a box that may not return); an owned task
  probes it every ``revive_interval_s`` (Ray restarts the actor, or a new one is created),
  loads the model again and returns the slots, and queued jobs start.
- ``worker-bg:<name>`` = ``background_replicas`` x concurrency, when set: BACKGROUND jobs take
  one unit too, so the other replicas stay free for REALTIME and INTERACTIVE jobs (which
  otherwise wait for a replica's running job: the call's state lives in its actor).
- ``ray-node:<label>`` = ``ray.nodes[label].slots`` for a pinned worker: the box's compute,
  shared by all workers pinned to it. A paused (preempted) job keeps its ``worker:`` slot (the
  model's per-call state lives in the actor) and gives the box's slot back, so a REALTIME job
  on another model of the same box runs while the paused one waits at its step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, WorkerDied
from core.scheduler import JobContext, Lane, Scheduler
from core.workers.base import ChunkCallback, WorkerCall, WorkerSpec, WorkerState
from core.workers.ray_settings import RaySettings, RayWorkerSettings
from core.workers.ray_view import BoxBook, read_nodes, replica_state

if TYPE_CHECKING:  # imported in start(), after connect() has set Ray's environment
    from core.workers.ray_worker import RayWorker

log = logging.getLogger(__name__)

NODES_TIMEOUT_S = 10.0  # one read of the cluster's node table


def worker_resource(name: str) -> str:
    return f"worker:{name}"


def background_resource(name: str) -> str:
    return f"worker-bg:{name}"


def node_resource(label: str) -> str:
    return f"ray-node:{label}"


def connect(settings: RaySettings) -> None:
    """Join the cluster as a driver (blocking: run it off the loop). Ray reads its token from
    the environment only (when its core is first imported), so a configured token is put
    there before ``import ray``; if Ray was imported already, its config is re-read the way
    Ray's own token set-up does."""
    if settings.auth_token is not None:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = settings.auth_token.get_secret_value()
        if "ray._raylet" in sys.modules:
            sys.modules["ray._raylet"].Config.initialize("")
    import ray

    ray.init(
        address=settings.address,
        namespace=settings.namespace,
        log_to_driver=False,
        logging_level=logging.WARNING,
        ignore_reinit_error=True,
    )


def disconnect() -> None:
    import ray

    ray.shutdown()


@dataclass(slots=True)
class _Group:
    settings: RayWorkerSettings
    replicas: list[RayWorker]
    jobs: dict[str, list[int]]  # replica name -> ids of the scheduler jobs running on it
    live: set[str]  # replica names counted in the worker: budget


class RayPool:
    """The Ray-hosted models of this front process (see the module docstring)."""

    def __init__(
        self,
        settings: RaySettings,
        scheduler: Scheduler,
        specs: Mapping[str, WorkerSpec],
        *,
        connect_cluster: bool = True,
    ) -> None:
        self._settings = settings
        self._scheduler = scheduler
        self._connect = connect_cluster
        self._specs = dict(specs)
        for worker in settings.workers:
            if worker.model not in self._specs:
                raise ConfigError(f"ray.workers: no worker spec for model {worker.model!r}")
        self._groups: dict[str, _Group] = {}
        self._reviver: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._connected = False
        self._boxes = BoxBook()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Join the cluster, define the resources, start every replica (in parallel). A replica
        that does not start within ``start_timeout_s`` is left to the reviver."""
        if self._connect:
            await asyncio.wait_for(
                asyncio.to_thread(connect, self._settings), self._settings.connect_timeout_s
            )
            self._connected = True
        self._build()
        for group in self._groups.values():
            self._set_budget(group)
            node = group.settings.node
            if node is not None:
                self._scheduler.define_resource(
                    node_resource(node), self._settings.node_slots(node)
                )
        await asyncio.gather(
            *(
                self._revive(group, replica)
                for group in self._groups.values()
                for replica in group.replicas
            )
        )
        await self.refresh_nodes()
        loop = asyncio.get_running_loop()
        self._reviver = loop.create_task(self._revive_loop(), name="ray-pool-reviver")
        self._watcher = loop.create_task(self._watch_nodes(), name="ray-pool-nodes")

    def _build(self) -> None:
        from core.workers.ray_worker import ActorPlacement, RayWorker

        settings = self._settings
        for worker in settings.workers:
            spec = self._specs[worker.model]
            replicas = [
                RayWorker(
                    spec,
                    ActorPlacement(
                        actor_name=f"xiaoyou-{worker.name}-{i}",
                        namespace=settings.namespace,
                        resources=worker.ray_resources(),
                        label_selector=worker.label_selector(),
                        num_cpus=worker.num_cpus,
                        concurrency=worker.concurrency,
                        max_restarts=worker.max_restarts,
                    ),
                    start_timeout_s=settings.start_timeout_s,
                    call_timeout_s=settings.call_timeout_s,
                )
                for i in range(worker.replicas)
            ]
            self._groups[worker.model] = _Group(
                worker, replicas, {r.name: [] for r in replicas}, set()
            )

    async def stop(self, timeout_s: float = 5.0) -> None:
        tasks = [t for t in (self._reviver, self._watcher) if t is not None]
        self._reviver = self._watcher = None
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout_s)
        for group in self._groups.values():
            for replica in group.replicas:
                await replica.stop(timeout_s)
        if self._connected:
            await asyncio.to_thread(disconnect)
            self._connected = False

    # -- what jobs declare ------------------------------------------------------------------------
    def serves(self, model: str) -> bool:
        return self._settings.worker_for(model) is not None

    def _worker(self, model: str) -> RayWorkerSettings:
        worker = self._settings.worker_for(model)
        if worker is None:
            raise ConfigError(f"no ray.workers entry hosts model {model!r}")
        return worker

    def job_resources(self, model: str, lane: Lane | None = None) -> dict[str, int]:
        """One replica slot (and the box's, for a pinned worker); a BACKGROUND job also one of
        the ``background_replicas`` slots when those are limited."""
        worker = self._worker(model)
        needs = {worker_resource(worker.name): 1}
        if lane is Lane.BACKGROUND and worker.background_replicas is not None:
            needs[background_resource(worker.name)] = 1
        if worker.node is not None:
            needs[node_resource(worker.node)] = 1
        return needs

    def kept_while_paused(self, model: str) -> frozenset[str]:
        """A paused job keeps its replica (its state lives there), gives the box back."""
        name = self._worker(model).name
        return frozenset({worker_resource(name), background_resource(name)})

    def replicas(self, model: str) -> list[RayWorker]:
        return list(self._groups[model].replicas)

    # -- calls -------------------------------------------------------------------------------
    async def call(
        self,
        ctx: JobContext,
        model: str,
        call: WorkerCall,
        *,
        on_chunk: ChunkCallback | None = None,
    ) -> Any:
        """Run ``call`` on a free replica of ``model`` inside the scheduler job ``ctx``: chunks
        go to ``on_chunk`` (default ``ctx.emit``), every step is ``ctx.checkpoint()``."""
        group = self._groups[model]
        replica = self._pick(group)

        async def on_step(step: int) -> None:
            await ctx.checkpoint()

        running = group.jobs[replica.name]
        running.append(ctx.job_id)
        try:
            return await replica.call(call, on_step=on_step, on_chunk=on_chunk or ctx.emit)
        except WorkerDied:
            self._lost(group, replica)
            raise
        finally:
            running.remove(ctx.job_id)

    def _pick(self, group: _Group) -> RayWorker:
        limit = group.settings.concurrency
        free = [
            r
            for r in group.replicas
            if r.name in group.live
            and r.state in (WorkerState.IDLE, WorkerState.BUSY)
            and len(group.jobs[r.name]) < limit
        ]
        if not free:
            raise WorkerDied(f"no live Ray worker for {group.settings.model!r} right now")
        return min(free, key=lambda r: len(group.jobs[r.name]))

    def _lost(self, group: _Group, replica: RayWorker) -> None:
        if replica.name in group.live:
            group.live.discard(replica.name)
            self._set_budget(group)
            log.warning("ray worker %s lost; reviving it", replica.name)
        self._wake.set()

    def _set_budget(self, group: _Group) -> None:
        """Live replicas x concurrency; with none live, one replica's worth: its jobs start and
        fail at once with WorkerDied (retryable) instead of queueing for a box that is gone."""
        worker = group.settings
        live = max(1, len(group.live))
        self._scheduler.define_resource(worker_resource(worker.name), live * worker.concurrency)
        if worker.background_replicas is not None:  # the rest is kept for voice and chat
            shared = min(worker.background_replicas, live) * worker.concurrency
            self._scheduler.define_resource(background_resource(worker.name), shared)

    async def _revive(self, group: _Group, replica: RayWorker) -> None:
        try:
            await replica.start()
        except WorkerDied as exc:
            log.warning("ray worker %s not available: %s", replica.name, exc)
            return
        group.live.add(replica.name)
        self._set_budget(group)

    async def _revive_loop(self) -> None:
        interval = self._settings.revive_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            dead = [
                (group, replica)
                for group in self._groups.values()
                for replica in group.replicas
                if replica.name not in group.live and replica.state is not WorkerState.STOPPED
            ]
            if dead:
                await asyncio.gather(*(self._revive(g, r) for g, r in dead))
            await self._check_idle()

    async def _watch_nodes(self) -> None:
        """The node table every ``revive_interval_s``, on its own (a revival may take up to
        ``start_timeout_s``, and the admin view must show a lost box meanwhile)."""
        while True:
            await asyncio.sleep(self._settings.revive_interval_s)
            await self.refresh_nodes()

    async def _check_idle(self) -> None:
        """Ping the live replicas that run nothing, so one that died while idle leaves the
        count (and is revived) before a job is sent to it."""
        idle = [
            (group, replica)
            for group in self._groups.values()
            for replica in group.replicas
            if replica.name in group.live and not group.jobs[replica.name]
        ]
        alive = await asyncio.gather(*(replica.alive() for _, replica in idle))
        for (group, replica), ok in zip(idle, alive, strict=True):
            if not ok and not group.jobs[replica.name]:
                self._lost(group, replica)

    # -- what operators see (/admin/workers, /admin/health) --------------------------------------
    async def refresh_nodes(self) -> None:
        """Read the cluster's node table (off the loop); a failure is kept, not raised."""
        try:
            nodes = await asyncio.wait_for(asyncio.to_thread(read_nodes), NODES_TIMEOUT_S)
        except (TimeoutError, ConnectionError) as exc:
            self._boxes.read_error = f"{type(exc).__name__}: {exc}"
            return
        self._boxes.update(nodes)

    def snapshot(self) -> dict[str, object]:
        """Boxes (alive ones and the lost), their resources and the replicas on them, and per
        model its replicas: state, box, running jobs, starts, last error."""
        by_node: dict[str, list[str]] = {}
        reserved: dict[str, dict[str, float]] = {}
        for group in self._groups.values():
            for replica in group.replicas:
                if replica.node_id is None or replica.name not in group.live:
                    continue
                by_node.setdefault(replica.node_id, []).append(replica.name)
                held = reserved.setdefault(replica.node_id, {})
                for resource, amount in group.settings.ray_resources().items():
                    held[resource] = held.get(resource, 0.0) + amount
        nodes = [
            {
                "node_id": node.node_id,
                "box": node.box,
                "address": node.address,
                "alive": node.alive,
                "labels": node.labels,
                "resources": node.resources,
                "reserved": reserved.get(node.node_id, {}),
                "actors": by_node.get(node.node_id, []),
            }
            for node in self._boxes.shown_nodes()
        ]
        boxes = {node.node_id: node.box for node in self._boxes.nodes}
        models = [
            {
                "model": group.settings.model,
                "worker": group.settings.name,
                "node": group.settings.node,
                "vram_mb": group.settings.vram_mb,
                "live": len(group.live),
                "replicas": [
                    {
                        "worker": replica.name,
                        "model": group.settings.model,
                        "state": replica_state(replica.state, replica.starts),
                        "worker_state": replica.state.value,
                        "live": replica.name in group.live,
                        "node_id": replica.node_id,
                        "box": boxes.get(replica.node_id or ""),
                        "pid": replica.pid,
                        "running_jobs": list(group.jobs[replica.name]),
                        "starts": replica.starts,
                        "last_error": replica.last_error,
                        "last_error_at": replica.last_error_at,
                    }
                    for replica in group.replicas
                ],
            }
            for group in self._groups.values()
        ]
        return {
            "address": self._settings.address,
            "namespace": self._settings.namespace,
            "nodes": nodes,
            "lost_boxes": self._boxes.lost_boxes(),
            "models": models,
            "problems": self.problems(),
        }

    def problems(self) -> list[str]:
        """Why the pool is degraded (empty: healthy): lost boxes, replicas not alive."""
        out = [f"ray box {box!r} lost (no alive Ray node)" for box in self._boxes.lost_boxes()]
        if self._boxes.read_error is not None:
            out.append(f"ray node table unreadable: {self._boxes.read_error}")
        for group in self._groups.values():
            for replica in group.replicas:
                if replica.name in group.live or replica.state is WorkerState.STOPPED:
                    continue
                why = f": {replica.last_error}" if replica.last_error else ""
                state = replica_state(replica.state, replica.starts)
                out.append(f"ray worker {replica.name} ({group.settings.model}) {state}{why}")
        return out

    def health(self) -> dict[str, object]:
        """The /admin/health section."""
        problems = self.problems()
        live = sum(len(g.live) for g in self._groups.values())
        total = sum(len(g.replicas) for g in self._groups.values())
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "boxes_alive": sorted(self._boxes.alive_boxes()),
            "replicas_live": live,
            "replicas": total,
        }
