"""The model manager: lazy load, idle unload and LRU eviction of the configured models.

One entry per model kind of the one registry (:data:`core.models.registry.MODELS`), plus
``tts_remote`` when the TTS routing table mixes local and remote voices (its remote routes;
kind ``tts``, holding ``remote:tts``; :data:`core.models.registry.PARTS`). A model loads on
first use, inside the scheduler job that needs it (a THREAD job holding the model's
resources: ``vram:N`` = footprint on cuda:N, ``cpu`` = 1 on CPU, and ``model:<name>`` = one
of the model's ``concurrency`` slots, so a job starts only when its model is free and never
waits on a lock inside the job), so a load counts against the VRAM budget; an
explicit :meth:`ModelManager.load` submits its own ``load:<name>`` job. Concurrent first uses
share one load. Before a load onto a GPU, least-recently-used idle models on that GPU are
unloaded until the resident footprints fit ``scheduler.settings.resources["vram:N"]``. An owned
background task unloads models idle for longer than their ``idle_unload_s``. A failed load is
raised (as ModelLoadError) to the jobs waiting for it and kept for :meth:`snapshot`; other
models are unaffected and the next use retries.

Warm start: :meth:`ModelManager.start_warm_up` (called by the app at start-up) loads the
``warm_start_models`` in an owned background task, all at once (the scheduler's ``cpu`` slots
bound how many load together); :meth:`ModelManager.warm_up_status` says whether they are all
loaded, which ``/readyz`` reports.

Backends are built by factories ``(kind settings, cache_dir) -> ModelBackend``; the defaults
are the one registry :data:`core.models.registry.MODELS`, and tests inject doubles through
``factories=``.

Models placed in a worker process (``placement="process"``, the default for vl and sd) are
held the same way: their backend object is a :class:`core.workers.hosted.WorkerModel`, loaded
with ``await aload()`` (the weights load inside the worker) by an ASYNC job that declares the
model's own resources (``cpu`` or ``vram:N``, ``model:<name>``), and unloaded by stopping the
worker. An injected factory for such a model wins (test doubles stay inline).

Remote models (a provider whose settings say ``remote``: OpenAI-compatible, Ollama, Edge) are
held on the loop instead: :meth:`ModelManager.use_async` loads them with ``await aload()``
inside an ASYNC job that declares ``remote:<name>`` (no thread, no ``cpu`` slot, no VRAM), and
unload/close ``await aclose()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from core.errors import (
    InferenceError,
    ModelError,
    ModelLoadError,
    ModelNotConfigured,
    XiaoyouError,
)
from core.models.base import CancelCheck, ModelBackend, never_cancelled
from core.models.model_entry import ModelEntry
from core.models.registry import MODEL_NAMES, MODELS, PARTS, TTS_REMOTE, WORKER_FACTORIES, Factory
from core.models.settings import ModelsSettings
from core.scheduler import ExecMode, JobContext, JobSpec, Lane, Scheduler

log = logging.getLogger(__name__)

B = TypeVar("B")

_WAIT_POLL_S = 0.05  # a job waiting for another job's load re-checks for cancellation this often
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


class ModelManager:
    def __init__(
        self,
        settings: ModelsSettings,
        scheduler: Scheduler,
        cache_dir: Path,
        *,
        factories: Mapping[str, Factory] | None = None,
    ) -> None:
        self._settings = settings
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
            injected = factories is not None and entry.name in factories
            if injected or entry.name not in WORKER_FACTORIES:
                entry.in_worker = False
        for entry in self._entries.values():  # a job starts only when its model is free
            slot = entry.model_resource
            if slot is not None:
                scheduler.define_resource(slot, entry.concurrency)
        self._lock = threading.Lock()  # guards every entry's bookkeeping (jobs run on threads)
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
        from core.workers.base import WorkerSpec
        from core.workers.hosted import WorkerModel
        from core.workers.process import ProcessWorker

        models = self._settings
        threads = str(models.worker_threads)
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        spec = WorkerSpec(entry.name, WORKER_FACTORIES[entry.name], entry.settings, env)
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
        entry = self.entry(name)
        backend = self._acquire(entry, check)
        try:
            yield _checked(name, backend, cls)
        finally:
            with self._lock:
                entry.release(time.time(), time.monotonic())

    def _acquire(self, entry: ModelEntry, check: CancelCheck) -> ModelBackend:
        while True:
            with self._lock:
                if entry.loaded and entry.backend is not None:
                    entry.acquire(time.monotonic())
                    return entry.backend
                leader = entry.loading is None
                if leader:
                    entry.loading = concurrent.futures.Future()
                pending = entry.loading
            assert pending is not None
            if leader:
                self._load_as_leader(entry, pending)
            else:
                _wait(pending, check)

    def _load_as_leader(self, entry: ModelEntry, pending: concurrent.futures.Future[None]) -> None:
        try:
            self._evict_for(entry)
            with self._lock:
                if entry.backend is None:
                    entry.backend = self._new_backend(entry)
                backend = entry.backend
            before_mb = _memory_mb(entry.device)
            started = time.perf_counter()
            backend.load()
            load_s = time.perf_counter() - started
            after_mb = _memory_mb(entry.device)
        except Exception as exc:
            error = exc if isinstance(exc, ModelError) else None
            if error is None:
                error = ModelLoadError(f"{entry.name}: load failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
            with self._lock:
                entry.load_failed(error)
            log.warning("model %s failed to load: %s", entry.name, error)
            pending.set_exception(error)
            if error is exc:
                raise
            raise error from exc
        measured = None if before_mb is None or after_mb is None else max(0.0, after_mb - before_mb)
        with self._lock:
            entry.load_succeeded(load_s, measured)
        log.info("model %s loaded in %.2f s (measured %s MB)", entry.name, load_s, measured)
        pending.set_result(None)

    def _evict_for(self, entry: ModelEntry) -> None:
        """Unload LRU idle models on ``entry``'s GPU until its footprint fits the budget."""
        if entry.gpu_resource is None:
            return
        budget = self._scheduler.settings.resources.get(entry.gpu_resource)
        if budget is None:
            return
        with self._lock:
            same_gpu = [
                e for e in self._entries.values() if e.device == entry.device and e is not entry
            ]
            resident = sum(e.footprint_mb for e in same_gpu if e.loaded)
            idle = sorted(
                (e for e in same_gpu if e.loaded and e.in_use == 0), key=lambda e: e.last_used_mono
            )
            for victim in idle:
                if resident + entry.footprint_mb <= budget:
                    break
                log.info("evicting %s (LRU) to make room for %s", victim.name, entry.name)
                self._unload_locked(victim)
                resident -= victim.footprint_mb
            if resident + entry.footprint_mb > budget:
                log.warning(
                    "%s: resident %d MB + %d MB exceed %s=%d MB (models in use)",
                    entry.name,
                    resident,
                    entry.footprint_mb,
                    entry.gpu_resource,
                    budget,
                )

    def _unload_locked(self, entry: ModelEntry) -> None:
        backend = entry.backend
        entry.unloaded()
        if backend is not None:
            backend.unload()
        if entry.gpu_resource is not None:
            _cuda_empty_cache()

    def _unload_if_idle(self, entry: ModelEntry) -> bool:
        with self._lock:
            if not entry.loaded or entry.in_use > 0:
                return False
            self._unload_locked(entry)
        log.info("model %s unloaded", entry.name)
        return True

    # -- remote models, on the loop inside an ASYNC job --------------------------------------
    @asynccontextmanager
    async def use_async(self, name: str, cls: type[B]) -> AsyncIterator[B]:
        """Hold remote or worker-placed ``name`` loaded (``await aload()`` first if needed)."""
        entry = self.entry(name)
        if not (entry.remote or entry.in_worker):
            raise ModelError(f"model {name!r} runs inline: use it in a THREAD job (use())")
        backend = await self._acquire_async(entry)
        try:
            yield _checked(name, backend, cls)
        finally:
            with self._lock:
                entry.release(time.time(), time.monotonic())

    async def _acquire_async(self, entry: ModelEntry) -> ModelBackend:
        while True:
            with self._lock:
                if entry.loaded and entry.backend is not None:
                    entry.acquire(time.monotonic())
                    return entry.backend
                leader = entry.loading is None
                if leader:
                    entry.loading = concurrent.futures.Future()
                pending = entry.loading
            assert pending is not None
            if leader:
                await self._load_remote(entry, pending)
            else:  # shield: a cancelled waiter must not cancel the leader's load
                await asyncio.shield(asyncio.wrap_future(pending))

    async def _load_remote(
        self, entry: ModelEntry, pending: concurrent.futures.Future[None]
    ) -> None:
        started = time.perf_counter()
        try:
            if entry.in_worker:
                self._evict_for(entry)
            with self._lock:
                if entry.backend is None:
                    entry.backend = self._new_backend(entry)
                backend = entry.backend
            aload = getattr(backend, "aload", None)
            if aload is None:
                raise ModelLoadError(f"{entry.name}: {type(backend).__name__} has no aload()")
            await aload()
        except BaseException as exc:
            if isinstance(exc, ModelError):
                error: ModelError = exc
            else:
                error = ModelLoadError(f"{entry.name}: load failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
            with self._lock:
                entry.load_failed(error)
            log.warning("model %s failed to load: %s", entry.name, error)
            pending.set_exception(error)
            if error is exc or not isinstance(exc, Exception):
                raise
            raise error from exc
        with self._lock:
            entry.load_succeeded(
                time.perf_counter() - started, getattr(backend, "measured_mb", None)
            )
        log.info("remote model %s ready in %.2f s", entry.name, time.perf_counter() - started)
        pending.set_result(None)

    async def _close_remote(self, entry: ModelEntry, *, only_idle: bool) -> bool:
        with self._lock:
            if not entry.loaded or (only_idle and entry.in_use > 0):
                return False
            backend = entry.backend
            entry.unloaded()
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
                async with self.use_async(name, object):
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
            with self.use(name, object, ctx.checkpoint_blocking) as backend:
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


def _warm_up_backend(name: str, backend: ModelBackend, check: CancelCheck) -> None:
    """The backend's warm-up inference; a failure makes the load fail (it does not run)."""
    started = time.perf_counter()
    try:
        backend.warm_up(check)
    except InferenceError as exc:
        raise ModelLoadError(f"{name} loads but does not run: {exc.message}") from exc
    log.info("warm start: %s warmed up in %.2f s", name, time.perf_counter() - started)


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


def _memory_mb(device: str) -> float | None:
    """GPU: torch.cuda.memory_allocated (when torch is already in use); CPU: process RSS."""
    if device.startswith("cuda"):
        torch: Any = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return None
        return float(torch.cuda.memory_allocated(int(device.split(":")[1]))) / 2**20
    return float(psutil.Process().memory_info().rss) / 2**20


def _cuda_empty_cache() -> None:
    torch: Any = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
