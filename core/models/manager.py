"""The model manager: lazy load, idle unload, VRAM residency and LRU eviction of the models.

One entry per model kind of the one registry (:data:`core.models.registry.MODELS`), plus
``tts_remote`` when the TTS routing table mixes local and remote voices (its remote routes;
kind ``tts``, holding ``remote:tts``; :data:`core.models.registry.PARTS`). A model loads on
first use, inside the scheduler job that needs it (a THREAD job holding the model's
resources: ``gpu:N`` = the compute of cuda:N, ``cpu`` = 1 on CPU, and ``model:<name>`` = one
of the model's ``concurrency`` slots, so a job starts only when its model is free and never
waits on a lock inside the job); an explicit :meth:`ModelManager.load` submits its own
``load:<name>`` job. Concurrent first uses share one load. An owned background task unloads
models idle for longer than their ``idle_unload_s``. A failed load is raised (as
ModelLoadError) to the jobs waiting for it and kept for :meth:`snapshot`; other models are
unaffected and the next use retries.

VRAM is residency (:mod:`core.models.residency`), one ledger per GPU with the budget
``scheduler.settings.resources["vram:N"]``: loaded weights hold their footprint once while
loaded, each job holds its model's ``working_mb`` while it runs or is paused. Nothing is
loaded, restored or started past the budget: the manager unloads idle models (LRU), then
offloads models whose every job is paused (``ModelBackend.offloadable``: an SD pipeline moved
to host memory while its job waits), else the job waits (its position in :meth:`vram`) up to
``vram_wait_timeout_s``. Preemption yields only ``gpu:N``. What the card really holds is a
:class:`core.models.gpu_memory.GpuMemory` per device (measured next to the plan).

Warm start: :meth:`ModelManager.start_warm_up` (called by the app at start-up) loads the
``warm_start_models`` in an owned background task, all at once (the scheduler's ``cpu`` slots
bound how many load together); :meth:`ModelManager.warm_up_status` says whether they are all
loaded, which ``/readyz`` reports.

Backends are built by factories ``(kind settings, cache_dir) -> ModelBackend``; the defaults
are the one registry :data:`core.models.registry.MODELS`, and tests inject doubles through
``factories=``.

Models placed in a worker process (``placement="process"``, the default for vl and sd) are
held the same way (:meth:`ModelManager.hold_async`): their backend object is a
:class:`core.workers.hosted.WorkerModel`, loaded with ``await aload()`` (the weights load
inside the worker) by an ASYNC job that declares the model's own resources (``cpu`` or
``gpu:N``, ``model:<name>``), and unloaded by stopping the worker. On a GPU they take part in
residency like inline models: weights reserved before the worker loads them (waiting with a
position, or evicting idle models LRU, which kills their workers), per-job working memory, a
dead worker's weights dropped, and a paused job's weights offloaded inside its worker (at the
step it waits at) and restored before its next step. An injected factory for such a model
runs inline, unless ``workers=`` builds the workers (test doubles).

Remote models (a provider whose settings say ``remote``: OpenAI-compatible, Ollama, Edge) are
held on the loop instead: :meth:`ModelManager.use_async` loads them with ``await aload()``
inside an ASYNC job that declares ``remote:<name>`` (no thread, no ``cpu`` slot, no VRAM), and
unload/close ``await aclose()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Generic, TypeVar

import psutil

from core.errors import (
    InferenceError,
    ModelError,
    ModelLoadError,
    ModelNotConfigured,
    VramUnavailable,
    XiaoyouError,
)
from core.models.base import CancelCheck, ModelBackend, never_cancelled
from core.models.gpu_memory import GpuMemory, default_gpu
from core.models.model_entry import ModelEntry
from core.models.registry import MODEL_NAMES, MODELS, PARTS, TTS_REMOTE, WORKER_FACTORIES, Factory
from core.models.residency import VramLedger, VramWaiter
from core.models.settings import ModelsSettings
from core.scheduler import ExecMode, JobContext, JobSpec, Lane, Scheduler
from core.workers.base import Worker, WorkerSpec

log = logging.getLogger(__name__)

B = TypeVar("B")

_WAIT_POLL_S = 0.05  # a job waiting for another job's load re-checks for cancellation this often
_ROOM_POLL_S = 0.005  # a job waiting for VRAM re-checks (cancel / preemption) this often
_MIN_SWEEP_S = 0.01


@dataclass(slots=True)
class WarmUp:
    """Progress of the start-up load of the warm-start models."""

    enabled: bool
    models: tuple[str, ...]
    started: bool = False
    loaded: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    started_mono: float | None = None
    finished_mono: float | None = None

    @property
    def done(self) -> bool:
        return not self.enabled or self.finished_mono is not None

    @property
    def ready(self) -> bool:
        """Every warm-start model loaded (always true with warm start off)."""
        return not self.enabled or (self.done and not self.errors)

    def to_dict(self) -> dict[str, object]:
        took = None
        if self.started_mono is not None and self.finished_mono is not None:
            took = round(self.finished_mono - self.started_mono, 3)
        return {
            "warm_start": self.enabled,
            "ready": self.ready,
            "models": list(self.models),
            "loaded": list(self.loaded),
            "loading": [
                n
                for n in self.models
                if self.started and n not in self.loaded and n not in self.errors
            ],
            "errors": dict(self.errors),
            "seconds": took,
        }


@dataclass(slots=True, eq=False)
class ModelHold(Generic[B]):
    """One job's use of a model (:meth:`ModelManager.hold`): the backend, and the pause hooks
    the job passes to ``ctx.checkpoint_blocking(hold)``: before a pause the backend saves its
    per-job state and the model counts as paused (so it may be offloaded); after the pause
    its weights are back on the device before the step goes on."""

    manager: ModelManager
    entry: ModelEntry
    backend: B
    id: int
    paused: bool = False
    restore_in_step: bool = False  # step() restores offloaded weights (a pausable wait)

    def step(self, check: Any) -> CancelCheck:
        """A ``check`` for the backend's steps: ``ctx.checkpoint_blocking`` with this hold.
        After a pause the weights come back before the step goes on; the wait for room and
        the restore stay pausable, and a higher lane that arrived during the restore gets its
        pause before the step (a REALTIME job waits for one step, not restore + step)."""
        self.restore_in_step = True
        manager = self.manager

        def checkpoint() -> None:
            check(self)
            while manager._restore_for_step(self, check):
                check(self)

        return checkpoint

    def astep(self, check: Any) -> Callable[[int], Awaitable[None]]:
        """An ``on_step`` for a worker call: ``await ctx.checkpoint(hold)`` at every step the
        worker reports. The pause is visible to the manager, which may have the worker offload
        the weights meanwhile; they are restored before the step goes on, as in :meth:`step`."""
        self.restore_in_step = True
        manager = self.manager

        async def on_step(step: int) -> None:
            await check(self)
            while await manager._arestore_for_step(self, check):
                await check(self)

        return on_step

    def save_state(self) -> object:
        saved = getattr(self.backend, "save_state", _no_state)()
        self.manager._paused(self)
        return (saved,)  # never None: the scheduler calls restore_state after the pause

    def restore_state(self, state: object) -> None:
        self.manager._resumed(self, restore=not self.restore_in_step)
        saved = state[0] if isinstance(state, tuple) else None
        if saved is not None:
            self.backend.restore_state(saved)  # type: ignore[attr-defined]


def _no_state() -> object:
    return None


AsyncCheck = Callable[[], Awaitable[None]]


async def _never_paused() -> None:
    """The ``check`` of an async use outside a job (no cancel, no pause)."""


@dataclass(slots=True)
class _Claim:
    """:meth:`ModelManager._claim`: the held backend, or the load to wait for (or lead)."""

    backend: ModelBackend | None
    pending: concurrent.futures.Future[None] | None
    leader: bool


class ModelManager:
    def __init__(
        self,
        settings: ModelsSettings,
        scheduler: Scheduler,
        cache_dir: Path,
        *,
        factories: Mapping[str, Factory] | None = None,
        gpus: Mapping[str, GpuMemory] | None = None,
        workers: Callable[[WorkerSpec], Worker] | None = None,
    ) -> None:
        """``factories``: backends by model name (test doubles; an injected factory runs
        inline, unless ``workers`` is given: then a model placed in a process runs in the
        worker ``workers(spec)`` builds, default a :class:`core.workers.process.ProcessWorker`
        on the registry's factory)."""
        self._settings = settings
        self._workers = workers
        self._factories = dict(factories or {})
        self._scheduler = scheduler
        self._cache_dir = cache_dir
        chosen = {**MODELS, **{n: f for n, (_k, f) in PARTS.items()}, **(factories or {})}
        self._entries = {
            name: ModelEntry.build(name, getattr(settings, name), chosen[name], settings)
            for name in MODEL_NAMES
        }
        if settings.tts.mixed_routes:  # tts speaks the local routes, tts_remote the remote ones
            self._entries[TTS_REMOTE] = ModelEntry.build(
                TTS_REMOTE, settings.tts, chosen[TTS_REMOTE], settings, kind="tts", remote=True
            )
        for entry in self._entries.values():  # placement applies to the registry's factories
            injected = factories is not None and entry.name in factories and workers is None
            if injected or (
                entry.name not in WORKER_FACTORIES and entry.name not in self._factories
            ):
                entry.in_worker = False
        for entry in self._entries.values():  # a job starts only when its model is free
            slot = entry.model_resource
            if slot is not None:
                scheduler.define_resource(slot, entry.concurrency)
        self._gpus: dict[str, GpuMemory] = dict(gpus or {})
        self._ledgers: dict[str, VramLedger] = {}
        for entry in self._entries.values():
            compute = entry.compute_resource
            if compute is None or entry.remote or entry.device in self._ledgers:
                continue
            gpu = self._gpus.setdefault(entry.device, default_gpu(entry.device))
            self._ledgers[entry.device] = VramLedger(entry.device, self._budget_mb(entry, gpu))
            scheduler.define_resource(
                compute, scheduler.settings.resources.get(compute, settings.gpu_compute_slots)
            )
        self._lock = threading.Lock()  # guards every entry's bookkeeping (jobs run on threads)
        self._room_changed = threading.Condition(self._lock)  # VRAM may have been freed
        self._hold_ids = count(1)
        self._loop: asyncio.AbstractEventLoop | None = None  # worker offloads run on it
        self._idle_task: asyncio.Task[None] | None = None
        self._warm_task: asyncio.Task[None] | None = None
        warm = list(settings.warm_start_models)
        if TTS_REMOTE in self._entries and "tts" in warm:
            warm.insert(warm.index("tts") + 1, TTS_REMOTE)
        self._warm = WarmUp(settings.warm_start, tuple(warm))
        self._closed = False

    # -- queries (any thread) -------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entry(self, name: str) -> ModelEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise ModelNotConfigured(f"no model named {name!r} (known: {self.names})") from None

    def job_resources(self, name: str) -> dict[str, int]:
        """The resources a job using ``name`` declares. Starts the idle sweeper (loop side)."""
        self._ensure_idle_task()
        return dict(self.entry(name).resources)

    def is_remote(self, name: str) -> bool:
        """Whether ``name`` is a network service (use :meth:`use_async` in an ASYNC job)."""
        return self.entry(name).remote

    def in_worker(self, name: str) -> bool:
        """Whether ``name`` runs in a worker process (use :meth:`use_async` in an ASYNC job)."""
        return self.entry(name).in_worker

    def _new_backend(self, entry: ModelEntry) -> ModelBackend:
        """``entry``'s backend object, not loaded: the factory's, or for a worker-placed model
        a :class:`core.workers.hosted.WorkerModel` whose worker builds it."""
        backend = entry.factory(entry.settings, self._cache_dir)  # cheap: no weights, no torch
        if not entry.in_worker:  # (and a missing model folder fails here, before any process)
            return backend
        from core.workers.hosted import WorkerModel
        from core.workers.process import ProcessWorker

        models = self._settings
        threads = str(models.worker_threads)
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        injected = self._factories.get(entry.name)
        build: Callable[[Any], Any] = (
            WORKER_FACTORIES[entry.name]
            if injected is None
            else functools.partial(injected_backend, injected, self._cache_dir)
        )
        spec = WorkerSpec(entry.name, build, entry.settings, env)
        worker: Worker
        if self._workers is not None:
            worker = self._workers(spec)
        else:
            worker = ProcessWorker(spec, start_timeout_s=models.worker_start_timeout_s)
        return WorkerModel(worker, stop_timeout_s=models.close_timeout_s)

    def kept_while_paused(self, name: str) -> frozenset[str]:
        """Resources a preempted job on ``name`` keeps: its model slot when the backend's
        per-job state lives in the shared model object (``pause_keeps_model``)."""
        entry = self.entry(name)
        slot = entry.model_resource
        if slot is None or not self.backend(name, object).pause_keeps_model:  # type: ignore[attr-defined]
            return frozenset()
        return frozenset({slot})

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return [entry.to_dict() for entry in self._entries.values()]

    def vram(self) -> dict[str, dict[str, object]]:
        """Per GPU: the residency plan (budget, resident weights, offloaded weights, working
        memory, jobs waiting for room with their positions) and what the card measures."""
        with self._lock:
            out = {device: ledger.to_dict() for device, ledger in self._ledgers.items()}
        for device, row in out.items():
            gpu = self._gpus[device]
            row["measured_used_mb"] = _rounded(gpu.used_mb())
            row["measured_peak_mb"] = _rounded(gpu.peak_mb())
            row["capacity_mb"] = gpu.capacity_mb()
        return out

    def _budget_mb(self, entry: ModelEntry, gpu: GpuMemory) -> int:
        """``scheduler.resources["vram:N"]``; without it the card's capacity (or no bound)."""
        budget = self._scheduler.settings.resources.get(entry.gpu_resource or "")
        if budget is not None:
            return budget
        capacity = gpu.capacity_mb()
        log.warning(
            "%s: no scheduler.resources[%r]; VRAM budget = %s",
            entry.device,
            entry.gpu_resource,
            "the card's capacity" if capacity is not None else "unbounded",
        )
        return capacity if capacity is not None else sys.maxsize

    def backend(self, name: str, cls: type[B]) -> B:
        """The (possibly not yet loaded) backend object of ``name``; built on first call."""
        entry = self.entry(name)
        with self._lock:
            if entry.backend is None:
                entry.backend = self._new_backend(entry)
            backend = entry.backend
        return _checked(name, backend, cls)

    # -- blocking use, inside a scheduler THREAD job ------------------------------------------
    @contextmanager
    def use(self, name: str, cls: type[B], check: CancelCheck = never_cancelled) -> Iterator[B]:
        """Hold ``name`` loaded (loading it first if needed) for the duration of the block."""
        with self.hold(name, cls, check) as held:
            yield held.backend

    @contextmanager
    def hold(
        self, name: str, cls: type[B], check: CancelCheck = never_cancelled, *, working: bool = True
    ) -> Iterator[ModelHold[B]]:
        """Like :meth:`use`, yielding a :class:`ModelHold` (its ``step(ctx.checkpoint_blocking)``
        lets the model be offloaded while the job is paused). On a GPU the job's
        ``working_mb`` is reserved on the model's ledger for the block (``working=False``: a
        load job, which runs nothing)."""
        entry = self.entry(name)
        ledger = self._ledgers.get(entry.device)
        working_mb = entry.working_mb if working and ledger is not None else 0
        hold_id = next(self._hold_ids)
        backend = self._acquire(entry, check, working_mb)
        held: ModelHold[B] = ModelHold(self, entry, backend, hold_id)  # type: ignore[arg-type]
        try:
            held.backend = _checked(name, backend, cls)
            if ledger is not None:
                self._reserve_working(entry, ledger, held, working_mb, check)
            yield held
        finally:
            with self._lock:
                if held.paused:  # cancelled while paused
                    entry.paused -= 1
                if ledger is not None:
                    ledger.drop_working(hold_id)
                entry.release(time.time(), time.monotonic())
                self._room_changed.notify_all()

    def _reserve_working(
        self,
        entry: ModelEntry,
        ledger: VramLedger,
        held: ModelHold[Any],
        mb: int,
        check: CancelCheck,
    ) -> None:
        """The job's working memory, plus the weights when they were offloaded meanwhile."""

        def need() -> int:
            return mb + (entry.footprint_mb if entry.offloaded else 0)

        def take() -> None:
            if entry.offloaded:
                self._restore_locked(entry, ledger)
            ledger.add_working(held.id, entry.name, mb)

        if need() == 0 and not entry.offloaded:
            return
        self._with_room(entry, ledger, need, take, check)

    def _claim(self, entry: ModelEntry) -> _Claim:
        """One attempt to hold ``entry``: loaded (the job holds it now), or the load to wait
        for, or this job leads the load (the one acquire step of the blocking and the async
        use; each then loads or waits its own way and claims again)."""
        with self._lock:
            if entry.loaded and entry.backend is not None:
                entry.acquire(time.monotonic())
                return _Claim(entry.backend, None, leader=False)
            leader = entry.loading is None
            if leader:
                entry.loading = concurrent.futures.Future()
            return _Claim(None, entry.loading, leader)

    def _acquire(self, entry: ModelEntry, check: CancelCheck, working_mb: int = 0) -> ModelBackend:
        while (claim := self._claim(entry)).backend is None:
            assert claim.pending is not None
            if claim.leader:
                self._load_as_leader(entry, claim.pending, check, working_mb)
            else:
                _wait(claim.pending, check)
        return claim.backend

    def _load_failed(
        self, entry: ModelEntry, pending: concurrent.futures.Future[None], exc: BaseException
    ) -> ModelError:
        """A load raised: its weights leave the ledger, the error is kept and given to the
        waiters; returns the error to raise (``exc`` itself when it is a ModelError)."""
        if isinstance(exc, ModelError):
            error: ModelError = exc
        else:
            error = ModelLoadError(f"{entry.name}: load failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        ledger = self._ledgers.get(entry.device)
        with self._lock:
            if ledger is not None:
                ledger.drop_weights(entry.name)
                self._room_changed.notify_all()
            entry.load_failed(error)
        log.warning("model %s failed to load: %s", entry.name, error)
        pending.set_exception(error)
        return error

    def _no_room_for_load(
        self, entry: ModelEntry, pending: concurrent.futures.Future[None]
    ) -> None:
        """The leader was cancelled, or timed out, waiting for room: its waiters try again."""
        with self._lock:
            entry.loading = None
        pending.set_result(None)

    def _weights_room(
        self, entry: ModelEntry, ledger: VramLedger, working_mb: int
    ) -> tuple[Callable[[], int], Callable[[], None]]:
        """``need``/``take`` of a load: room for the weights and the first job's working
        memory; the weights are counted from here (before the load allocates them)."""

        def take() -> None:
            ledger.add_weights(entry.name, entry.footprint_mb)

        return (lambda: entry.footprint_mb + working_mb), take

    def _load_as_leader(
        self,
        entry: ModelEntry,
        pending: concurrent.futures.Future[None],
        check: CancelCheck = never_cancelled,
        working_mb: int = 0,
    ) -> None:
        ledger = self._ledgers.get(entry.device)
        if ledger is not None:  # room for the weights (and the first job's working memory)
            try:
                self._with_room(
                    entry, ledger, *self._weights_room(entry, ledger, working_mb), check
                )
            except BaseException:  # cancelled, or no room in time: the waiters try themselves
                self._no_room_for_load(entry, pending)
                raise
        try:
            with self._lock:
                if entry.backend is None:
                    entry.backend = self._new_backend(entry)
                backend = entry.backend
            gpu = self._gpus.get(entry.device)
            before_mb = _memory_mb(gpu)
            started = time.perf_counter()
            backend.load()
            load_s = time.perf_counter() - started
            after_mb = _memory_mb(gpu)
        except Exception as exc:
            error = self._load_failed(entry, pending, exc)
            if error is exc:
                raise
            raise error from exc
        measured = None if before_mb is None or after_mb is None else max(0.0, after_mb - before_mb)
        with self._lock:
            entry.load_succeeded(load_s, measured)
            if ledger is not None:
                ledger.loads += 1
        size = "not measured" if measured is None else f"{measured:.0f} MB measured"
        log.info("model %s loaded in %.2f s (%s)", entry.name, load_s, size)
        pending.set_result(None)

    # -- VRAM residency (every method ending in _locked runs under self._lock) ----------------
    def _with_room(
        self,
        entry: ModelEntry,
        ledger: VramLedger,
        need: Callable[[], int],
        take: Callable[[], None],
        check: CancelCheck,
    ) -> None:
        """Make room for ``need()`` MB on ``ledger`` (unload idle models LRU, then offload
        models whose every job is paused) and call ``take()`` under the lock; otherwise wait,
        visible in :meth:`vram`, cancellable (and pausable) through ``check``, up to
        ``vram_wait_timeout_s``. A blocking job's wait (:meth:`_with_room_async`: a job on
        the loop)."""
        deadline = time.monotonic() + self._settings.vram_wait_timeout_s
        waiter: list[VramWaiter] = []
        try:
            while True:
                with self._lock:
                    if self._room_attempt_locked(entry, ledger, need, take, waiter, deadline):
                        return
                    self._room_changed.wait(_ROOM_POLL_S)
                check()
        finally:
            self._leave_room_queue(ledger, waiter)

    async def _with_room_async(
        self,
        entry: ModelEntry,
        ledger: VramLedger,
        need: Callable[[], int],
        take: Callable[[], None],
        check: Callable[[], Awaitable[None]],
    ) -> None:
        """:meth:`_with_room` for a job on the loop (a worker-placed model): polls."""
        deadline = time.monotonic() + self._settings.vram_wait_timeout_s
        waiter: list[VramWaiter] = []
        try:
            while True:
                with self._lock:
                    if self._room_attempt_locked(entry, ledger, need, take, waiter, deadline):
                        return
                await asyncio.sleep(_ROOM_POLL_S)
                await check()
        finally:
            self._leave_room_queue(ledger, waiter)

    def _room_attempt_locked(
        self,
        entry: ModelEntry,
        ledger: VramLedger,
        need: Callable[[], int],
        take: Callable[[], None],
        waiter: list[VramWaiter],
        deadline: float,
    ) -> bool:
        """One try of a room wait: True when ``take()`` ran; else the job is (or stays) in
        the ledger's queue; VramUnavailable past ``deadline``."""
        if self._free_up_locked(ledger, need(), entry):
            take()
            return True
        if not waiter:
            waiter.append(ledger.enqueue(entry.name, need()))
            log.info(
                "%s waits for %d MB on %s (%d MB free, position %d)",
                entry.name,
                need(),
                ledger.device,
                ledger.free_mb,
                len(ledger.waiting),
            )
        if time.monotonic() >= deadline:
            raise VramUnavailable(
                f"{entry.name}: no room for {need()} MB on {ledger.device} within"
                f" {self._settings.vram_wait_timeout_s} s (models in use hold"
                f" {ledger.used_mb} of {ledger.budget_mb} MB)"
            )
        return False

    def _leave_room_queue(self, ledger: VramLedger, waiter: list[VramWaiter]) -> None:
        if waiter:
            with self._lock:
                ledger.leave(waiter[0])

    def _free_up_locked(self, ledger: VramLedger, need_mb: int, target: ModelEntry) -> bool:
        if ledger.fits(need_mb):
            return True
        others = [
            e for e in self._entries.values() if e.device == ledger.device and e is not target
        ]
        idle = [e for e in others if e.loaded and e.in_use == 0 and e.name in ledger.weights]
        for victim in sorted(idle, key=lambda e: e.last_used_mono):
            log.info("evicting %s (LRU) to make room for %s", victim.name, target.name)
            self._unload_locked(victim)
            ledger.evictions += 1
            if ledger.fits(need_mb):
                return True
        paused = [
            e
            for e in others
            if e.loaded
            and e.in_use > 0
            and e.paused == e.in_use
            and e.name in ledger.weights
            and e.backend is not None
            and e.offloading is None
            and (e.backend.offloadable or _offloads_async(e.backend))
        ]
        for victim in sorted(paused, key=lambda e: e.last_used_mono):
            if _offloads_async(victim.backend):  # in a worker: room once the worker confirms
                self._offload_worker_locked(victim, ledger, target)
                continue
            self._offload_locked(victim, ledger)
            log.info(
                "offloaded %s (its jobs are paused) to make room for %s", victim.name, target.name
            )
            if ledger.fits(need_mb):
                return True
        return False

    def _offload_worker_locked(
        self, entry: ModelEntry, ledger: VramLedger, target: ModelEntry
    ) -> None:
        """Ask the paused job's worker to move its weights to host memory (on the loop: the
        worker's socket is the loop's); the ledger frees them when the worker confirms."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        log.info("offloading %s in its worker (its job is paused) for %s", entry.name, target.name)
        entry.offloading = asyncio.run_coroutine_threadsafe(
            self._offload_worker(entry, ledger), loop
        )

    async def _offload_worker(self, entry: ModelEntry, ledger: VramLedger) -> None:
        backend = entry.backend
        started = time.perf_counter()
        try:
            await backend.aoffload()  # type: ignore[union-attr]
        except XiaoyouError as exc:  # the job ended meanwhile, or the worker died
            log.warning("offload of %s in its worker failed: %s", entry.name, exc)
            with self._lock:
                entry.offloading = None
                self._room_changed.notify_all()
            return
        with self._lock:
            entry.offloading = None
            if entry.name in ledger.weights:
                ledger.offload(entry.name)
                entry.offloaded = True
                self._gpus[entry.device].empty_cache()
                ledger.last_offload_s = time.perf_counter() - started
            self._room_changed.notify_all()

    async def _arestore_for_step(self, held: ModelHold[Any], check: AsyncCheck) -> bool:
        """:meth:`_restore_for_step` for a worker-placed model (the move runs in the worker):
        an offload asked during the pause ends first, then the weights are counted back on
        the ledger (waiting for room, pausable) and restored. True when it restored."""
        entry = held.entry
        ledger = self._ledgers.get(entry.device)
        offloading = entry.offloading
        if offloading is not None:
            await asyncio.wrap_future(offloading)
        if ledger is None or not entry.offloaded:
            return False
        taken: list[bool] = []

        def take() -> None:
            if entry.offloaded:
                ledger.add_weights(entry.name, entry.footprint_mb)
                entry.offloaded = False  # counted from here; nobody offloads it meanwhile
                taken.append(True)

        await self._with_room_async(
            entry, ledger, lambda: entry.footprint_mb if entry.offloaded else 0, take, check
        )
        if not taken:
            return False
        started = time.perf_counter()
        await held.backend.arestore()
        with self._lock:
            ledger.restores += 1
            ledger.last_restore_s = time.perf_counter() - started
        return True

    def _offload_locked(self, entry: ModelEntry, ledger: VramLedger) -> None:
        assert entry.backend is not None
        started = time.perf_counter()
        entry.backend.offload()
        ledger.offload(entry.name)
        entry.offloaded = True
        self._gpus[entry.device].empty_cache()
        ledger.last_offload_s = time.perf_counter() - started

    def _restore_locked(self, entry: ModelEntry, ledger: VramLedger) -> None:
        assert entry.backend is not None
        started = time.perf_counter()
        entry.backend.restore()
        ledger.add_weights(entry.name, entry.footprint_mb)
        ledger.restores += 1
        entry.offloaded = False
        ledger.last_restore_s = time.perf_counter() - started

    def _paused(self, held: ModelHold[Any]) -> None:
        """A job on ``held`` pauses at a step: once all its model's jobs are paused, the model
        may be offloaded for a waiting one."""
        with self._lock:
            if not held.paused:
                held.paused = True
                held.entry.paused += 1
                self._room_changed.notify_all()

    def _resumed(self, held: ModelHold[Any], *, restore: bool = True) -> None:
        """After the pause: the weights back on the device (restored, waiting for room if
        needed) before the next step runs (``restore=False``: the hold's step does that)."""
        entry = held.entry
        with self._lock:
            if held.paused:
                held.paused = False
                entry.paused -= 1
        ledger = self._ledgers.get(entry.device)
        if ledger is None or not entry.offloaded or not restore:
            return

        def take() -> None:
            if entry.offloaded:
                self._restore_locked(entry, ledger)

        self._with_room(
            entry,
            ledger,
            lambda: entry.footprint_mb if entry.offloaded else 0,
            take,
            never_cancelled,
        )

    def _restore_for_step(self, held: ModelHold[Any], check: Any) -> bool:
        """Before a step: the weights back if they were offloaded during a pause (waiting
        for room, pausable through ``check``). True when it restored them."""
        entry = held.entry
        ledger = self._ledgers.get(entry.device)
        if ledger is None or not entry.offloaded:
            return False
        restored: list[bool] = []

        def take() -> None:
            if entry.offloaded:
                self._restore_locked(entry, ledger)
                restored.append(True)

        self._with_room(
            entry, ledger, lambda: entry.footprint_mb if entry.offloaded else 0, take, check
        )
        return bool(restored)

    def _unload_locked(self, entry: ModelEntry) -> None:
        backend = entry.backend
        entry.unloaded()
        if backend is not None:
            backend.unload()
        ledger = self._ledgers.get(entry.device)
        if ledger is not None:
            ledger.drop_weights(entry.name)
            self._gpus[entry.device].empty_cache()
            self._room_changed.notify_all()

    def _unload_if_idle(self, entry: ModelEntry) -> bool:
        with self._lock:
            if not entry.loaded or entry.in_use > 0:
                return False
            self._unload_locked(entry)
        log.info("model %s unloaded", entry.name)
        return True

    # -- remote models, on the loop inside an ASYNC job --------------------------------------
    @asynccontextmanager
    async def use_async(
        self, name: str, cls: type[B], check: AsyncCheck = _never_paused
    ) -> AsyncIterator[B]:
        """Hold remote or worker-placed ``name`` loaded (``await aload()`` first if needed)."""
        async with self.hold_async(name, cls, check) as held:
            yield held.backend

    @asynccontextmanager
    async def hold_async(
        self, name: str, cls: type[B], check: AsyncCheck = _never_paused, *, working: bool = True
    ) -> AsyncIterator[ModelHold[B]]:
        """Like :meth:`use_async`, yielding the :class:`ModelHold` (``hold.astep(ctx.
        checkpoint)`` is the worker call's ``on_step``). A worker-placed model on a GPU takes
        part in residency exactly like an inline one: its weights are reserved on the ledger
        before the worker loads them (waiting with a position, or after evicting idle models
        LRU), the job's ``working_mb`` is reserved for the block, and a worker that died under
        the job leaves the ledger (the next use loads it again through the same reservation).
        ``check`` (the job's ``ctx.checkpoint``) runs while it waits for room: cancel, pause.
        ``working=False``: a load job, which runs nothing."""
        entry = self.entry(name)
        if not (entry.remote or entry.in_worker):
            raise ModelError(f"model {name!r} runs inline: use it in a THREAD job (use())")
        ledger = self._ledgers.get(entry.device) if entry.in_worker else None
        working_mb = entry.working_mb if ledger is not None and working else 0
        self._loop = asyncio.get_running_loop()
        backend = await self._acquire_async(entry, check, working_mb)
        held: ModelHold[B] = ModelHold(self, entry, backend, next(self._hold_ids))  # type: ignore[arg-type]
        try:
            held.backend = _checked(name, backend, cls)
            if ledger is not None:  # offloaded under a job cancelled while paused: back first
                await self._arestore_for_step(held, check)
            if ledger is not None and working_mb > 0:

                def take() -> None:
                    ledger.add_working(held.id, entry.name, working_mb)

                await self._with_room_async(entry, ledger, lambda: working_mb, take, check)
            yield held
        finally:
            with self._lock:
                if held.paused:  # cancelled while paused
                    entry.paused -= 1
                if ledger is not None:
                    ledger.drop_working(held.id)
                entry.release(time.time(), time.monotonic())
                if entry.loaded and getattr(backend, "dead", False):  # died under this job
                    log.warning("model %s: its worker died; it loads again on next use", name)
                    entry.unloaded()
                    self._drop_worker_weights(entry)
                self._room_changed.notify_all()

    async def _acquire_async(
        self, entry: ModelEntry, check: AsyncCheck, working_mb: int
    ) -> ModelBackend:
        while (claim := self._claim(entry)).backend is None:
            assert claim.pending is not None
            if claim.leader:
                await self._load_remote(entry, claim.pending, check, working_mb)
            else:  # shield: a cancelled waiter must not cancel the leader's load
                await asyncio.shield(asyncio.wrap_future(claim.pending))
        return claim.backend

    async def _load_remote(
        self,
        entry: ModelEntry,
        pending: concurrent.futures.Future[None],
        check: AsyncCheck,
        working_mb: int,
    ) -> None:
        """Load a remote or worker-placed model from the loop; a worker-placed one on a GPU
        first gets room on the ledger, as :meth:`_load_as_leader` does for an inline one."""
        ledger = self._ledgers.get(entry.device) if entry.in_worker else None
        if ledger is not None:
            try:
                need, take = self._weights_room(entry, ledger, working_mb)
                await self._with_room_async(entry, ledger, need, take, check)
            except BaseException:  # cancelled, or no room in time: the waiters try themselves
                self._no_room_for_load(entry, pending)
                raise
        started = time.perf_counter()
        try:
            with self._lock:
                if entry.backend is None:
                    entry.backend = self._new_backend(entry)
                backend = entry.backend
            aload = getattr(backend, "aload", None)
            if aload is None:
                raise ModelLoadError(f"{entry.name}: {type(backend).__name__} has no aload()")
            await aload()
        except BaseException as exc:
            error = self._load_failed(entry, pending, exc)
            if error is exc or not isinstance(exc, Exception):
                raise
            raise error from exc
        with self._lock:
            entry.load_succeeded(
                time.perf_counter() - started, getattr(backend, "measured_mb", None)
            )
            if ledger is not None:
                ledger.loads += 1
        log.info("model %s ready in %.2f s", entry.name, time.perf_counter() - started)
        pending.set_result(None)

    def _drop_worker_weights(self, entry: ModelEntry) -> None:
        ledger = self._ledgers.get(entry.device)
        if ledger is not None and entry.in_worker:
            ledger.drop_weights(entry.name)
            self._room_changed.notify_all()

    async def _close_remote(self, entry: ModelEntry, *, only_idle: bool) -> bool:
        with self._lock:
            if not entry.loaded or (only_idle and entry.in_use > 0):
                return False
            backend = entry.backend
            entry.unloaded()
            self._drop_worker_weights(entry)
        aclose = getattr(backend, "aclose", None)
        if aclose is not None:
            await aclose()
        log.info("remote model %s closed", entry.name)
        return True

    # -- asyncio side ------------------------------------------------------------------------
    async def load(
        self,
        name: str,
        *,
        lane: Lane = Lane.INTERACTIVE,
        owner: str = "system",
        warm_up: bool = False,
    ) -> None:
        """Load ``name`` now in a ``load:<name>`` scheduler job; raises ModelLoadError.
        ``warm_up``: then run the backend's :meth:`~ModelBackend.warm_up` inference in the
        same job (local backends; a remote one is only probed)."""
        entry = self.entry(name)
        if entry.remote or entry.in_worker:

            async def run_remote(ctx: JobContext) -> None:
                async with self.hold_async(name, object, ctx.checkpoint, working=False):
                    pass

            remote_spec = JobSpec(
                kind=f"load:{name}",
                lane=lane,
                owner=owner,
                resources=self.job_resources(name),
                label=f"load {entry.name}",
            )
            await self._scheduler.submit(run_remote, spec=remote_spec).result()
            return

        def run(ctx: JobContext) -> None:
            with self.hold(name, object, ctx.checkpoint_blocking, working=warm_up) as held:
                backend = held.backend
                if warm_up and isinstance(backend, ModelBackend):
                    _warm_up_backend(name, backend, ctx.checkpoint_blocking)

        spec = JobSpec(
            kind=f"load:{name}",
            lane=lane,
            owner=owner,
            mode=ExecMode.THREAD,
            resources=self.job_resources(name),
            label=f"load {entry.name}",
        )
        await self._scheduler.submit(run, spec=spec).result()

    async def unload(self, name: str) -> bool:
        """Unload ``name`` if loaded and not in use; False when there was nothing to do."""
        entry = self.entry(name)
        if not entry.loaded:
            return False
        if entry.remote or entry.in_worker:
            return await self._close_remote(entry, only_idle=True)
        if not self._scheduler.accepting:
            return self._unload_if_idle(entry)

        def run(ctx: JobContext) -> bool:
            return self._unload_if_idle(entry)

        spec = JobSpec(
            kind=f"unload:{name}",
            lane=Lane.INTERACTIVE,
            owner="system",
            mode=ExecMode.THREAD,
            label=f"unload {name}",
        )
        return bool(await self._scheduler.submit(run, spec=spec).result())

    def warm_up_status(self) -> dict[str, object]:
        """The start-up load: which warm-start models are loaded, loading or failed."""
        with self._lock:
            return self._warm.to_dict()

    def start_warm_up(self) -> None:
        """Start loading the warm-start models in the background (loop side; once)."""
        if not self._warm.enabled or self._warm_task is not None or self._closed:
            return
        self._warm_task = asyncio.get_running_loop().create_task(
            self.warm_up(), name="models.warm-up"
        )

    async def warm_up(self) -> None:
        """Load every warm-start model; failures are recorded (and logged), not raised."""
        warm = self._warm
        with self._lock:
            warm.started, warm.started_mono = True, time.monotonic()
        log.info("warm start: loading %s", ", ".join(warm.models))

        async def one(name: str) -> None:
            try:
                await self.load(name, owner="warm-start", warm_up=True)
            except XiaoyouError as exc:
                with self._lock:
                    warm.errors[name] = exc.message
                log.warning("warm start: %s did not load: %s", name, exc.message)
                return
            with self._lock:
                warm.loaded.append(name)

        await asyncio.gather(*(one(name) for name in warm.models))
        with self._lock:
            warm.finished_mono = time.monotonic()
        status = self.warm_up_status()
        log.info(
            "warm start: %s in %.1f s%s",
            "ready" if status["ready"] else "incomplete",
            status["seconds"],
            f" (failed: {', '.join(warm.errors)})" if warm.errors else "",
        )

    async def close(self) -> None:
        """Stop the warm-up and the idle sweeper, and unload every model."""
        self._closed = True
        for task in (self._warm_task, self._idle_task):
            if task is not None:
                task.cancel()
                await asyncio.wait({task}, timeout=self._settings.close_timeout_s)
        self._warm_task = self._idle_task = None
        for entry in self._entries.values():
            if entry.remote or entry.in_worker:
                await self._close_remote(entry, only_idle=False)
                continue
            with self._lock:
                if entry.loaded:
                    self._unload_locked(entry)

    def _ensure_idle_task(self) -> None:
        if self._idle_task is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called from a job thread; the loop side starts it
        self._idle_task = loop.create_task(self._idle_main(), name="models.idle-unload")

    def _sweep_interval_s(self) -> float:
        periods = [e.idle_unload_s / 4 for e in self._entries.values() if e.idle_unload_s > 0]
        return max(_MIN_SWEEP_S, min([self._settings.idle_check_interval_s, *periods]))

    async def _idle_main(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s())
            now = time.monotonic()
            with self._lock:
                expired = [e.name for e in self._entries.values() if e.idle_expired(now)]
            for name in expired:
                try:
                    await self.unload(name)
                except XiaoyouError as exc:  # e.g. the scheduler closed under us: next sweep
                    log.warning("idle unload of %s failed: %s", name, exc)


def injected_backend(factory: Factory, cache_dir: Path, settings: Any) -> ModelBackend:
    """An injected factory's backend, built inside its worker (module-level: picklable)."""
    return factory(settings, cache_dir)


def _warm_up_backend(name: str, backend: ModelBackend, check: CancelCheck) -> None:
    """The backend's warm-up inference; a failure makes the load fail (it does not run)."""
    started = time.perf_counter()
    try:
        backend.warm_up(check)
    except InferenceError as exc:
        raise ModelLoadError(f"{name} loads but does not run: {exc.message}") from exc
    log.info("warm start: %s warmed up in %.2f s", name, time.perf_counter() - started)


def _offloads_async(backend: object) -> bool:
    """A worker-placed model whose weights its worker can move while its job is paused."""
    return bool(getattr(backend, "offloads_async", False))


def _checked(name: str, backend: object, cls: type[B]) -> B:
    if not isinstance(backend, cls):
        raise ModelError(f"model {name!r} is a {type(backend).__name__}, not a {cls.__name__}")
    return backend


def _wait(pending: concurrent.futures.Future[None], check: CancelCheck) -> None:
    """Wait for another job's load; stays cancellable. Re-raises that load's error."""
    while True:
        check()
        with suppress(concurrent.futures.TimeoutError):
            pending.result(timeout=_WAIT_POLL_S)
            return


def _memory_mb(gpu: GpuMemory | None) -> float | None:
    """GPU: what its allocator measures (torch.cuda.memory_allocated); CPU: process RSS."""
    if gpu is not None:
        return gpu.used_mb()
    return float(psutil.Process().memory_info().rss) / 2**20


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
