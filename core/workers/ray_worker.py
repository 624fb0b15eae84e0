"""A :class:`core.workers.base.Worker` backed by one Ray actor (imported only with Ray).

The actor (:mod:`core.workers.ray_actor`) is placed by Ray from its custom resources
(``vram_mb`` of a box, a GPU's ``vram_mb_gpu<i>``) and node label; it is restarted by Ray after
a crash (``max_restarts``). A call is one streaming actor task: the front reads its events on
the event loop (no thread), runs ``on_chunk``/``on_step`` (the job's emit and checkpoint) and
answers each step with ``go`` (fire and forget, so the actor runs at most one step ahead) or
``abort``. Actor or node death surfaces as Ray's ``RayActorError``/``ActorUnavailableError``
or as silence for ``call_timeout_s``: the call raises :class:`core.errors.WorkerDied`, the
state is DEAD, and :meth:`RayWorker.start` waits for Ray's restart (or creates a new actor once
Ray gave up) and loads the model again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from core.errors import JobCancelled, WorkerDied
from core.workers.base import LOAD, ChunkCallback, StepCallback, WorkerCall, WorkerSpec, WorkerState
from core.workers.ray_actor import ABORTED, ERROR, RESULT, STEP, actor_class

log = logging.getLogger(__name__)

_DEATH = (RayActorError, GetTimeoutError)  # ActorDiedError and ActorUnavailableError included


@dataclass(frozen=True, slots=True)
class ActorPlacement:
    """How Ray places and restarts the actor (from :class:`RayWorkerSettings`)."""

    actor_name: str
    namespace: str
    resources: dict[str, float] = field(default_factory=dict)
    label_selector: dict[str, str] | None = None
    num_cpus: float = 0.0
    concurrency: int = 1
    max_restarts: int = -1


class RayWorker:
    """One model in one Ray actor; ``concurrency`` calls at once (one by default)."""

    def __init__(
        self,
        spec: WorkerSpec,
        placement: ActorPlacement,
        *,
        start_timeout_s: float = 120.0,
        call_timeout_s: float = 30.0,
        load: bool = True,
    ) -> None:
        self._spec = spec
        self._placement = placement
        self._start_timeout_s = start_timeout_s
        self._call_timeout_s = call_timeout_s
        self._load = load
        self._state = WorkerState.NEW
        self._actor: Any = None
        self._ids = itertools.count(1)
        self._running: set[int] = set()
        self._start_lock = asyncio.Lock()
        self.node_id: str | None = None
        self.labels: dict[str, str] = {}
        self.pid: int | None = None
        self.starts = 0
        self.last_error: str | None = None  # why it last died or failed to start (admin view)
        self.last_error_at: float | None = None  # time.time() of that

    @property
    def name(self) -> str:
        return self._placement.actor_name

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def actor(self) -> Any:
        """The Ray actor handle (tests kill it with ``ray.kill(..., no_restart=False)``)."""
        return self._actor

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the actor (or wait for Ray's restart of a dead one), then load the model."""
        async with self._start_lock:
            if self._state in (WorkerState.IDLE, WorkerState.BUSY):
                return
            self._state = WorkerState.STARTING
            try:
                await asyncio.wait_for(self._start(), self._start_timeout_s)
            except (TimeoutError, RayError, WorkerDied) as exc:
                self._died(f"did not start: {exc!r}")
                raise WorkerDied(f"worker {self.name} did not start: {exc!r}") from exc
            self._state = WorkerState.IDLE

    async def _start(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            if self._actor is None:
                self._actor = self._create()
            try:
                info = await asyncio.wait_for(self._actor.ping.remote(), 10.0)
                break
            except RayActorError as exc:  # restarting (unavailable) or gone for good (died)
                if _gone_for_good(exc):
                    log.warning("worker %s: actor gone (%s); creating a new one", self.name, exc)
                    self._actor = None
            except TimeoutError:
                pass  # pending: no node with the resources yet, or the node is still joining
            if time.monotonic() > deadline:
                raise TimeoutError(f"actor not ready in {self._start_timeout_s} s")
            await asyncio.sleep(0.5)
        self.node_id = str(info["node_id"])
        self.labels = dict(info["labels"])
        self.pid = int(info["pid"])
        self.starts += 1
        if self._load and not info["loaded"]:
            self._state = WorkerState.BUSY
            await self._call(WorkerCall(self._spec.name, LOAD), _no_step, _no_chunk)
        log.info("worker %s ready on node %s (pid %d)", self.name, self.node_id, self.pid)

    def _create(self) -> Any:
        p = self._placement
        options: dict[str, Any] = {
            "name": p.actor_name,
            "namespace": p.namespace,
            "get_if_exists": True,
            "max_restarts": p.max_restarts,
            "max_task_retries": 0,  # a call is never re-run by Ray: WorkerDied goes to its job
            "num_cpus": p.num_cpus,
            "resources": dict(p.resources),
            "max_concurrency": 1000,  # async actor: ping/go/abort beside the running calls
        }
        if p.label_selector:
            options["label_selector"] = dict(p.label_selector)
        return actor_class().options(**options).remote(self._spec, p.concurrency)

    async def stop(self, timeout_s: float) -> None:
        actor, self._actor = self._actor, None
        self._state = WorkerState.STOPPED
        if actor is not None:
            with contextlib.suppress(RayError):
                ray.kill(actor, no_restart=True)

    async def kill(self) -> None:
        """Kill the actor process the way a crash would (Ray restarts it): for tests."""
        if self._actor is not None:
            ray.kill(self._actor, no_restart=False)

    async def alive(self, timeout_s: float = 10.0) -> bool:
        """Ping an idle actor; a dead or silent one makes the state DEAD (health checks)."""
        actor = self._actor
        if actor is None or self._state not in (WorkerState.IDLE, WorkerState.BUSY):
            return False
        try:
            info = await asyncio.wait_for(actor.ping.remote(), timeout_s)
        except (TimeoutError, RayError) as exc:
            self._died(f"idle health ping failed: {type(exc).__name__}")
            return False
        if int(info["pid"]) != self.pid or not info["loaded"]:  # restarted by Ray meanwhile
            self._died(f"restarted by Ray while idle (pid {self.pid} -> {info['pid']})")
            return False
        return True

    # -- calls -------------------------------------------------------------------------------
    async def cancel(self) -> None:
        actor = self._actor
        if actor is not None:
            for call_id in list(self._running):
                actor.abort.remote(call_id)

    async def call(
        self, call: WorkerCall, *, on_step: StepCallback, on_chunk: ChunkCallback
    ) -> Any:
        if self._state not in (WorkerState.IDLE, WorkerState.BUSY) or self._actor is None:
            raise WorkerDied(f"worker {self.name} is {self._state.value}: start() it first")
        self._state = WorkerState.BUSY
        try:
            return await self._call(call, on_step, on_chunk)
        finally:
            if self._state is WorkerState.BUSY and not self._running:
                self._state = WorkerState.IDLE

    async def _call(self, call: WorkerCall, on_step: StepCallback, on_chunk: ChunkCallback) -> Any:
        actor = self._actor
        call_id = next(self._ids)
        self._running.add(call_id)
        stream = actor.run.options(num_returns="streaming").remote(call_id, call)
        try:
            while True:
                event = await self._next(stream)
                kind = event[0]
                if kind == ABORTED:
                    raise JobCancelled(f"worker {self.name}: call abandoned")
                for chunk in event[2]:
                    await on_chunk(chunk)
                if kind == RESULT:
                    return event[1]
                if kind == ERROR:
                    raise event[1]
                assert kind == STEP
                try:
                    await on_step(event[1])
                except asyncio.CancelledError:
                    raise
                except BaseException:
                    actor.abort.remote(call_id)
                    await self._until_end(stream)
                    raise
                actor.go.remote(call_id, event[1])
        except asyncio.CancelledError:  # the job was cancelled hard: stop the actor's backend
            actor.abort.remote(call_id)
            raise
        finally:
            self._running.discard(call_id)

    async def _next(self, stream: Any) -> tuple[Any, ...]:
        try:
            ref = await asyncio.wait_for(stream.__anext__(), self._call_timeout_s)
            event: tuple[Any, ...] = await asyncio.wait_for(ref, self._call_timeout_s)
        except StopAsyncIteration as exc:
            self._died("a call ended without a result")
            raise WorkerDied(f"worker {self.name}: the call ended without a result") from exc
        except TimeoutError as exc:
            self._died(f"no answer for {self._call_timeout_s} s (node gone?)")
            raise WorkerDied(
                f"worker {self.name}: no answer for {self._call_timeout_s} s (node gone?)"
            ) from exc
        except _DEATH as exc:
            self._died(f"died during a call: {type(exc).__name__}")
            raise WorkerDied(f"worker {self.name} died: {type(exc).__name__}") from exc
        return event

    async def _until_end(self, stream: Any) -> None:
        """Read what is left of an abandoned call (at most one step of the actor's work)."""
        with contextlib.suppress(WorkerDied):
            while (await self._next(stream))[0] not in (RESULT, ERROR, ABORTED):
                pass

    def _died(self, why: str) -> None:
        self.last_error, self.last_error_at = why, time.time()
        if self._state is not WorkerState.STOPPED:
            self._state = WorkerState.DEAD


def _gone_for_good(exc: RayActorError) -> bool:
    """Ray gave up on the actor (restarts exhausted, killed for good), as opposed to an actor
    that is restarting or whose node is unreachable for now."""
    from ray.exceptions import ActorDiedError

    return isinstance(exc, ActorDiedError)


async def _no_step(step: int) -> None:
    return None


async def _no_chunk(chunk: Any) -> None:
    return None
