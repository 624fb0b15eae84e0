"""ModelManager logic with test-double backends and the real scheduler: lazy load, unload,
LRU eviction under a VRAM budget, idle unload, one load for concurrent first uses, and
load-failure isolation."""

# mypy: disable-error-code="type-abstract"
# (interface ABCs are passed to ModelManager.use as isinstance targets)

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.errors import InferenceError, JobCancelled, ModelLoadError, ModelNotConfigured
from core.models.inference import Inference
from core.models.llm import ChatMessage, Llm, LlmSettings
from core.models.manager import ModelManager
from core.models.sd import SdSettings
from core.models.settings import ModelsSettings
from core.models.vl import VlSettings
from core.scheduler import ExecMode, JobContext, JobSpec, Lane, Scheduler
from tests.models_llm.conftest import FakeBackend


def gpu_settings(footprint_mb: int = 400, idle_unload_s: float | None = None) -> ModelsSettings:
    """llm, vl and sd on cuda:0 (the scheduler fixture's budget is vram:0 = 1000 MB), with no
    per-job working memory (tests/models_llm/test_vram.py covers that)."""
    return ModelsSettings(
        llm=LlmSettings(device="cuda:0", footprint_mb=footprint_mb, idle_unload_s=idle_unload_s),
        vl=VlSettings(device="cuda:0", footprint_mb=footprint_mb, model_dir=Path("unused")),
        sd=SdSettings(device="cuda:0", footprint_mb=footprint_mb, model_dir=Path("unused")),
        working_mb={},
    )


def doubles(**backends: FakeBackend) -> dict[str, Any]:
    return {name: (lambda b: lambda _s, _c: b)(backend) for name, backend in backends.items()}


def loaded(manager: ModelManager) -> set[str]:
    return {str(row["name"]) for row in manager.snapshot() if row["loaded"]}


async def use_in_job(scheduler: Scheduler, manager: ModelManager, name: str) -> list[str]:
    def run(ctx: JobContext) -> list[str]:
        with manager.use(name, Llm, ctx.checkpoint_blocking) as llm:
            return list(
                llm.stream_chat([], max_tokens=2, temperature=0.0, check=ctx.checkpoint_blocking)
            )

    spec = JobSpec(kind=name, mode=ExecMode.THREAD, resources=manager.job_resources(name))
    result: list[str] = await scheduler.submit(run, spec=spec).result()
    return result


async def test_resources_follow_device(scheduler: Scheduler, tmp_path: Path) -> None:
    manager = ModelManager(gpu_settings(footprint_mb=300), scheduler, tmp_path)
    # plus the model's slot: one job on the llama.cpp context at a time, queued in the scheduler;
    # on a GPU the job takes its compute, and the weights are the manager's residency, not a
    # per-job charge
    assert manager.job_resources("llm") == {"gpu:0": 1, "model:llm": 1}
    assert manager.job_resources("asr") == {"cpu": 1, "model:asr": 1}
    assert manager.job_resources("vad") == {}  # microsecond work never queues for a cpu slot
    with pytest.raises(ModelNotConfigured):
        manager.job_resources("nope")
    await manager.close()


async def test_lazy_load_use_and_unload(scheduler: Scheduler, tmp_path: Path) -> None:
    llm = FakeBackend()
    manager = ModelManager(gpu_settings(), scheduler, tmp_path, factories=doubles(llm=llm))
    assert loaded(manager) == set()
    assert await use_in_job(scheduler, manager, "llm") == ["t0 ", "t1 "]
    assert llm.loads == 1 and loaded(manager) == {"llm"}
    await use_in_job(scheduler, manager, "llm")
    assert llm.loads == 1  # stays loaded between uses
    row = next(r for r in manager.snapshot() if r["name"] == "llm")
    assert row["uses"] == 2 and row["device"] == "cuda:0" and row["footprint_mb"] == 400
    assert row["provider"] == "llamacpp" and row["last_used_ts"] is not None
    assert row["measured_mb"] is None  # cuda:0 declared, but no CUDA here to measure with
    assert await manager.unload("llm") is True
    assert llm.unloads == 1 and loaded(manager) == set()
    assert await manager.unload("llm") is False
    await manager.load("llm")
    assert llm.loads == 2 and loaded(manager) == {"llm"}
    await manager.close()
    assert llm.unloads == 2


async def test_lru_eviction_under_vram_budget(scheduler: Scheduler, tmp_path: Path) -> None:
    llm, vl, sd = FakeBackend(), FakeBackend(), FakeBackend()
    manager = ModelManager(
        gpu_settings(footprint_mb=400),
        scheduler,
        tmp_path,
        factories=doubles(llm=llm, vl=vl, sd=sd),
    )
    await manager.load("llm")
    await manager.load("vl")
    await use_in_job(scheduler, manager, "llm")  # llm is now more recently used than vl
    await manager.load("sd")  # 3 x 400 MB > 1000 MB: the LRU idle model (vl) goes
    assert loaded(manager) == {"llm", "sd"}
    assert vl.unloads == 1 and llm.unloads == 0
    await use_in_job(scheduler, manager, "vl")  # vl back in: now llm is the LRU one
    assert loaded(manager) == {"sd", "vl"} and llm.unloads == 1
    await manager.close()


async def test_models_in_use_are_not_evicted(scheduler: Scheduler, tmp_path: Path) -> None:
    llm, vl = FakeBackend(), FakeBackend()
    settings = gpu_settings(footprint_mb=500)
    settings.gpu_compute_slots = 2  # the load runs beside the busy job
    manager = ModelManager(settings, scheduler, tmp_path, factories=doubles(llm=llm, vl=vl))
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def hold(ctx: JobContext) -> None:
        with manager.use("llm", Llm, ctx.checkpoint_blocking):
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()

    spec = JobSpec(kind="llm", mode=ExecMode.THREAD, resources=manager.job_resources("llm"))
    holder = scheduler.submit(hold, spec=spec)
    await started.wait()
    await manager.load("vl")  # 500 + 500 fit; llm is busy and must stay
    assert loaded(manager) == {"llm", "vl"} and llm.unloads == 0
    release.set()
    await holder.result()
    await manager.close()


async def test_idle_unload(scheduler: Scheduler, tmp_path: Path) -> None:
    llm = FakeBackend()
    settings = gpu_settings(idle_unload_s=0.2)
    manager = ModelManager(settings, scheduler, tmp_path, factories=doubles(llm=llm))
    await manager.load("llm")
    assert loaded(manager) == {"llm"}
    for _ in range(100):
        if not loaded(manager):
            break
        await asyncio.sleep(0.05)
    assert loaded(manager) == set() and llm.unloads == 1
    await use_in_job(scheduler, manager, "llm")  # a later use loads it again
    assert llm.loads == 2
    await manager.close()


async def test_warm_start_models_load_together_and_stay_loaded(
    scheduler: Scheduler, tmp_path: Path
) -> None:
    """A warm-start model is not idle-unloaded (its next turn would be a cold start again)
    unless its own idle_unload_s says so; the others keep the default idle unload."""
    llm, vl, sd = FakeBackend(load_delay_s=0.2), FakeBackend(load_delay_s=0.2), FakeBackend()
    settings = gpu_settings(footprint_mb=300).model_copy(
        update={
            "default_idle_unload_s": 0.2,
            "warm_start_models": ["llm", "vl"],
            "gpu_compute_slots": 2,  # a load job takes the GPU's compute like any other job
        }
    )
    settings.vl.idle_unload_s = 0.3
    factories = doubles(llm=llm, vl=vl, sd=sd)
    manager = ModelManager(settings, scheduler, tmp_path, factories=factories)
    assert manager.warm_up_status()["ready"] is False
    started = asyncio.get_running_loop().time()
    await manager.warm_up()
    assert asyncio.get_running_loop().time() - started < 0.38  # both loads at once
    status = manager.warm_up_status()
    assert status["ready"] is True and sorted(status["loaded"]) == ["llm", "vl"]  # type: ignore[call-overload]
    await use_in_job(scheduler, manager, "sd")  # not warm: default idle unload (0.2 s)
    for _ in range(40):
        await asyncio.sleep(0.05)
    assert loaded(manager) == {"llm"} and llm.unloads == 0 and vl.unloads == sd.unloads == 1
    await manager.close()


class WarmedBackend(FakeBackend):
    """Records its warm-up inference (after load, before readiness); may fail it."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__(load_delay_s=0.05)
        self.warmed: list[bool] = []  # whether it was loaded when warmed up
        self.fail = fail

    def warm_up(self, check: Any) -> None:
        check()
        self.warmed.append(self.loaded)
        if self.fail:
            raise InferenceError("warm-up decode failed (test double)")


async def test_warm_start_runs_one_warm_up_inference_per_model_before_ready(
    scheduler: Scheduler, tmp_path: Path
) -> None:
    """First-call costs are paid at start-up: each warm-start model runs its warm-up once,
    loaded, before readiness; a later use does not warm it again; a model whose warm-up
    fails is reported as an error, not as loaded."""
    llm, vl = WarmedBackend(), WarmedBackend(fail=True)
    settings = gpu_settings(footprint_mb=100).model_copy(
        update={"warm_start_models": ["llm", "vl"]}
    )
    manager = ModelManager(settings, scheduler, tmp_path, factories=doubles(llm=llm, vl=vl))
    await manager.warm_up()
    status = manager.warm_up_status()
    assert llm.warmed == [True] and vl.warmed == [True]
    assert status["loaded"] == ["llm"] and "does not run" in status["errors"]["vl"]  # type: ignore[index]
    assert status["ready"] is False
    await use_in_job(scheduler, manager, "llm")
    assert llm.warmed == [True]  # not on every use
    await manager.close()


async def test_concurrent_first_uses_trigger_one_load(scheduler: Scheduler, tmp_path: Path) -> None:
    llm = FakeBackend(load_delay_s=0.3)
    settings = ModelsSettings(llm=LlmSettings(footprint_mb=10))  # on CPU: cpu slots only
    manager = ModelManager(settings, scheduler, tmp_path, factories=doubles(llm=llm))
    results = await asyncio.gather(
        *(use_in_job(scheduler, manager, "llm") for _ in range(2)),
        manager.load("llm"),
        manager.load("llm"),
    )
    assert results[:2] == [["t0 ", "t1 "]] * 2
    assert llm.loads == 1
    await manager.close()


async def test_load_failure_is_isolated_and_retried(scheduler: Scheduler, tmp_path: Path) -> None:
    llm, vl = FakeBackend(), FakeBackend(load_delay_s=0.2, fail_loads=1)
    settings = gpu_settings(footprint_mb=100)
    settings.concurrency["vl"] = 2  # two jobs may wait for one load at once
    settings.gpu_compute_slots = 2  # (both on the GPU's compute at once)
    manager = ModelManager(settings, scheduler, tmp_path, factories=doubles(llm=llm, vl=vl))
    outcomes = await asyncio.gather(
        use_in_job(scheduler, manager, "vl"), manager.load("vl"), return_exceptions=True
    )
    assert all(isinstance(o, ModelLoadError) for o in outcomes), outcomes
    assert vl.loads == 1  # both waiters got the one failed attempt's error
    row = next(r for r in manager.snapshot() if r["name"] == "vl")
    assert not row["loaded"] and "corrupt weights" in str(row["load_error"])
    assert await use_in_job(scheduler, manager, "llm") == ["t0 ", "t1 "]  # others keep serving
    await use_in_job(scheduler, manager, "vl")  # a later use retries, and succeeds
    row = next(r for r in manager.snapshot() if r["name"] == "vl")
    assert row["loaded"] and row["load_error"] is None and vl.loads == 2
    await manager.close()


async def test_unconfigured_model_reports_clearly(scheduler: Scheduler, tmp_path: Path) -> None:
    manager = ModelManager(ModelsSettings(), scheduler, tmp_path)  # vl has no model_dir
    with pytest.raises(ModelNotConfigured, match="model_dir"):
        await manager.load("vl", lane=Lane.BACKGROUND)
    row = next(r for r in manager.snapshot() if r["name"] == "vl")
    assert "model_dir" in str(row["load_error"])
    await manager.close()


async def test_cpu_load_measures_rss(scheduler: Scheduler, tmp_path: Path) -> None:
    settings = ModelsSettings(llm=LlmSettings(footprint_mb=10))
    manager = ModelManager(settings, scheduler, tmp_path, factories=doubles(llm=FakeBackend()))
    await manager.load("llm")
    row = next(r for r in manager.snapshot() if r["name"] == "llm")
    assert isinstance(row["measured_mb"], float) and row["measured_mb"] >= 0.0
    assert isinstance(row["load_s"], float)
    await manager.close()


async def test_facade_cancel_closes_the_backend_stream(
    scheduler: Scheduler, tmp_path: Path
) -> None:
    llm = FakeBackend()
    settings = ModelsSettings(llm=LlmSettings(footprint_mb=10))
    manager = ModelManager(settings, scheduler, tmp_path, factories=doubles(llm=llm))
    inference = Inference(scheduler, manager, settings)
    handle = inference.chat(
        [ChatMessage("user", "hi")], lane=Lane.INTERACTIVE, owner="t", max_tokens=10_000
    )
    first = await anext(aiter(handle.stream()))  # the producer now blocks on a full buffer
    assert first == "t0 "
    handle.cancel()
    with pytest.raises(JobCancelled):
        await handle.result()
    for _ in range(500):
        if llm.open_streams == 0 and manager.snapshot()[2]["in_use"] == 0:
            break
        await asyncio.sleep(0.01)
    assert llm.open_streams == 0  # the backend's generator was closed
    assert [r["in_use"] for r in manager.snapshot() if r["name"] == "llm"] == [0]
    await manager.close()
