"""A simulated GPU soak: the real scheduler, model manager and inference facade driving
stand-in backends that allocate on a :class:`core.models.gpu_memory.SimulatedGpu`.

The stand-ins are test doubles of the real interfaces (Llm, Asr, VisionLanguage,
ImageGenerator) with GPU-shaped behaviour: ``load`` allocates the weights on the simulated
card, ``unload`` frees them, ``offload``/``restore`` (VL, SD: like diffusers' ``pipe.to``) free
and re-allocate them, and every job allocates its working memory while it runs (kept while it
is paused). The LLM behaves like llama.cpp: not offloadable, its per-job state saved across a
pause. Any over-commitment by the manager shows up as :class:`core.errors.GpuOutOfMemory`.

:func:`soak` submits a random (seeded) mix of voice turns (REALTIME ASR + LLM on the GPU,
TTS on the CPU), QQ chats (INTERACTIVE LLM), vision questions (INTERACTIVE VL) and drawings
(BACKGROUND SD) and reports jobs run, out-of-memory errors, the longest REALTIME wait for
compute in SD steps, and the peaks. Used by tests/models_llm/test_vram.py and by
``bench/gpu_bench.py`` (its CPU path).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import GpuOutOfMemory, WorkerDied, XiaoyouError
from core.models.asr import Asr, AsrSettings, Transcript
from core.models.base import CancelCheck
from core.models.inference import Inference
from core.models.llm import ChatMessage, Llm, LlmSettings
from core.models.manager import ModelManager
from core.models.sd import DrawRequest, ImageGenerator, SdSettings
from core.models.settings import ModelsSettings
from core.models.tts import PcmChunk, Tts
from core.models.vl import VisionLanguage, VlSettings
from core.scheduler import Lane, Scheduler, SchedulerSettings
from core.workers.base import (
    LOAD,
    OFFLOAD,
    RESTORE,
    ChunkCallback,
    StepCallback,
    WorkerCall,
    WorkerSpec,
    WorkerState,
)
from core.workers.calls import call_backend

_IDS = itertools.count(1)
_STEP_SLACK_S = 0.01  # dispatch and thread wake-up on top of "one SD step"


@dataclass(frozen=True, slots=True)
class SimShape:
    """Sizes (MB) and step times (s) of the stand-ins: an 8 GB card's worth by default
    (a 7B Q4 GGUF, whisper-small, Qwen2-VL-2B fp16, SD 1.5 fp16)."""

    card_mb: int = 8192
    budget_mb: int = 7680  # the VRAM budget, set below the card
    llm_mb: int = 4400
    asr_mb: int = 500
    vl_mb: int = 2000
    sd_mb: int = 1800
    working: tuple[tuple[str, int], ...] = (("llm", 300), ("asr", 100), ("vl", 400), ("sd", 500))
    token_s: float = 0.004
    sd_step_s: float = 0.03
    load_s: float = 0.01
    offload_s: float = 0.004
    sd_steps: tuple[int, int] = (5, 20)  # a drawing's steps, drawn uniformly
    chat_tokens: int = 40

    def working_mb(self) -> dict[str, int]:
        return dict(self.working)


@dataclass(slots=True)
class StepLog:
    """The longest step the stand-ins really took (a loaded box oversleeps ``sd_step_s``)."""

    longest_sd_step_s: float = 0.0


class _OnGpu:
    """Weights and per-job working memory of a stand-in on the simulated card."""

    name = "model"

    def __init__(
        self, gpu: Any, shape: SimShape, footprint_mb: int, steps: StepLog | None = None
    ) -> None:
        self._gpu = gpu
        self._steps = steps or StepLog()
        self._shape = shape
        self._footprint_mb = footprint_mb
        self._working_mb = shape.working_mb().get(self.name, 0)
        self.on_device = False

    def load(self) -> None:
        time.sleep(self._shape.load_s)
        self._gpu.allocate(f"weights:{self.name}", self._footprint_mb)
        self.on_device = True

    def unload(self) -> None:
        self._gpu.free(f"weights:{self.name}")
        self.on_device = False

    def offload(self) -> None:
        time.sleep(self._shape.offload_s)
        self._gpu.free(f"weights:{self.name}")
        self.on_device = False

    def restore(self) -> None:
        time.sleep(self._shape.offload_s)
        self._gpu.allocate(f"weights:{self.name}", self._footprint_mb)
        self.on_device = True

    @contextmanager
    def working(self) -> Iterator[None]:
        tag = f"work:{self.name}:{next(_IDS)}"
        self._gpu.allocate(tag, self._working_mb)
        try:
            yield
        finally:
            self._gpu.free(tag)

    def step(self, seconds: float) -> None:
        if not self.on_device:  # a step ran while the weights were not on the card
            raise GpuOutOfMemory(f"{self.name}: step on weights that are not on the device")
        time.sleep(seconds)


class SimLlm(_OnGpu, Llm):
    name = "llm"
    pause_keeps_model = False  # like llama.cpp: the sequence is saved across a pause

    def save_state(self) -> object:
        return "kv"

    def restore_state(self, state: object) -> None:
        return None

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        with self.working():
            for i in range(max_tokens):
                check()
                self.step(self._shape.token_s)
                yield f"t{i} "


class SimAsr(_OnGpu, Asr):
    name = "asr"

    def transcribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        with self.working():
            self.step(self._shape.token_s * 4)
            return Transcript("你好", "zh", len(pcm) / 16_000)


class SimVl(_OnGpu, VisionLanguage):
    name = "vl"
    pause_keeps_model = False
    offloadable = True

    def answer(
        self,
        image: bytes,
        question: str,
        *,
        max_tokens: int,
        check: CancelCheck,
        emit: Callable[[str], None] | None = None,
    ) -> str:
        with self.working():
            for _ in range(max_tokens):
                check()
                self.step(self._shape.token_s)
        return "一只猫"


class SimSd(_OnGpu, ImageGenerator):
    name = "sd"
    offloadable = True

    def generate(self, request: DrawRequest, *, check: CancelCheck) -> bytes:
        with self.working():
            for _ in range(request.steps):
                check()
                started = time.perf_counter()
                self.step(self._shape.sd_step_s)
                took = time.perf_counter() - started
                self._steps.longest_sd_step_s = max(self._steps.longest_sd_step_s, took)
        return b"\x89PNG sim"


class SimTts(Tts):
    """On the CPU (no ledger): chunks of silence."""

    def __init__(self, shape: SimShape) -> None:
        self._shape = shape

    def load(self) -> None:
        return None

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        for _ in range(3):
            check()
            time.sleep(self._shape.token_s)
            yield PcmChunk(np.zeros(160, dtype=np.int16), sample_rate_hz)


class ThreadWorker:
    """A worker double (the :class:`core.workers.base.Worker` protocol) for the soak: it hosts
    the stand-in backend in this process and runs each call on a thread, lock-step at every
    step like a :class:`core.workers.process.ProcessWorker` (the backend waits at its step
    until the front's ``on_step`` returned: cancel, pause). Its loads, unloads and per-job
    working memory go to the simulated card through the stand-in; killing it (eviction)
    frees the weights as a process exit would."""

    def __init__(self, spec: WorkerSpec) -> None:
        self._spec = spec
        self._state = WorkerState.NEW
        self._backend: Any = None
        self._parked = False
        self.starts = 0

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def parked(self) -> bool:
        return self._parked

    @property
    def state(self) -> WorkerState:
        return self._state

    async def start(self) -> None:
        self._backend = None
        self._state = WorkerState.IDLE
        self.starts += 1

    async def call(
        self, call: WorkerCall, *, on_step: StepCallback, on_chunk: ChunkCallback
    ) -> Any:
        if self._state is not WorkerState.IDLE:
            raise WorkerDied(f"worker {self.name} is {self._state.value}")
        self._state = WorkerState.BUSY
        try:
            if call.method == LOAD:
                backend = self._spec.factory(self._spec.settings)
                await asyncio.to_thread(backend.load)
                self._backend = backend
                return {"load_s": 0.0, "measured_mb": None, "offloadable": backend.offloadable}
            if call.method in (OFFLOAD, RESTORE):
                return await self._move(call.method)
            loop = asyncio.get_running_loop()
            steps = itertools.count(1)

            async def parked(step: int) -> None:
                self._parked = True
                try:
                    await on_step(step)
                finally:
                    self._parked = False

            def check() -> None:
                asyncio.run_coroutine_threadsafe(parked(next(steps)), loop).result()

            async def chunk(item: Any) -> None:
                await on_chunk(item)

            def emit(item: Any) -> None:
                asyncio.run_coroutine_threadsafe(chunk(item), loop).result()

            return await asyncio.to_thread(
                call_backend, self._backend, call, emit=emit, check=check
            )
        finally:
            if self._state is WorkerState.BUSY:
                self._state = WorkerState.IDLE

    async def at_step(self, command: str) -> float:
        """Offload / restore while the call waits at a step (as the process worker does)."""
        if not self._parked:
            raise WorkerDied(f"worker {self.name}: no call waits at a step")
        return await self._move(command)

    async def _move(self, command: str) -> float:
        started = time.perf_counter()
        backend = self._backend
        await asyncio.to_thread(backend.offload if command == OFFLOAD else backend.restore)
        return time.perf_counter() - started

    async def cancel(self) -> None:
        return None

    def terminate(self) -> None:
        """Killed (eviction): the process's memory goes back at once."""
        self._drop()
        self._state = WorkerState.DEAD

    async def stop(self, timeout_s: float) -> None:
        self._drop()
        self._state = WorkerState.STOPPED

    def _drop(self) -> None:
        if self._backend is not None:
            self._backend.unload()
            self._backend = None


def sim_models_settings(shape: SimShape, placement: str = "inline") -> ModelsSettings:
    """``placement``: where VL and SD run: "inline" (THREAD jobs) or "process" (ASYNC jobs
    awaiting a worker: the manager's worker residency path; the soak's worker is a
    :class:`ThreadWorker`)."""
    unused = Path("unused")
    return ModelsSettings(
        llm=LlmSettings(device="cuda:0", footprint_mb=shape.llm_mb),
        asr=AsrSettings(device="cuda:0", footprint_mb=shape.asr_mb),
        vl=VlSettings(
            device="cuda:0", footprint_mb=shape.vl_mb, model_dir=unused, placement=placement
        ),
        sd=SdSettings(
            device="cuda:0", footprint_mb=shape.sd_mb, model_dir=unused, placement=placement
        ),
        working_mb=shape.working_mb(),
        warm_start=False,
        default_idle_unload_s=0.0,
        vram_wait_timeout_s=20.0,
    )


def sim_factories(gpu: Any, shape: SimShape, steps: StepLog | None = None) -> dict[str, Any]:
    return {
        "llm": lambda _s, _c: SimLlm(gpu, shape, shape.llm_mb),
        "asr": lambda _s, _c: SimAsr(gpu, shape, shape.asr_mb),
        "vl": lambda _s, _c: SimVl(gpu, shape, shape.vl_mb),
        "sd": lambda _s, _c: SimSd(gpu, shape, shape.sd_mb, steps),
        "tts": lambda _s, _c: SimTts(shape),
    }


@dataclass(slots=True)
class SoakReport:
    jobs: int = 0
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    out_of_memory: int = 0
    realtime_jobs: int = 0
    realtime_wait_max_s: float = 0.0
    realtime_wait_p50_s: float = 0.0
    realtime_within_one_step: float = 1.0  # share of REALTIME waits <= 1 SD step + 10 ms
    sd_step_s: float = 0.0
    longest_sd_step_s: float = 0.0  # measured: time.sleep oversleeps on a loaded box
    peak_card_mb: float = 0.0
    peak_plan_mb: int = 0
    budget_mb: int = 0
    card_mb: int = 0
    offloads: int = 0
    restores: int = 0
    evictions: int = 0
    loads: int = 0
    seconds: float = 0.0
    worst: dict[str, object] = field(default_factory=dict)  # the longest-waiting REALTIME job
    trace: list[dict[str, object]] = field(default_factory=list)

    @property
    def realtime_wait_max_steps(self) -> float:
        return self.realtime_wait_max_s / self.sd_step_s if self.sd_step_s else 0.0

    @property
    def realtime_wait_max_measured_steps(self) -> float:
        """The longest REALTIME wait in units of the longest SD step that really ran."""
        step = self.longest_sd_step_s or self.sd_step_s
        return self.realtime_wait_max_s / step if step else 0.0

    def lines(self) -> list[str]:
        return [
            f"jobs {self.jobs}, completed {self.completed}, errors {self.errors or 0},"
            f" out-of-memory {self.out_of_memory}, {self.seconds:.1f} s",
            f"REALTIME jobs {self.realtime_jobs}: wait for compute p50"
            f" {self.realtime_wait_p50_s * 1000:.1f} ms, max {self.realtime_wait_max_s * 1000:.1f}"
            f" ms = {self.realtime_wait_max_steps:.2f} SD steps ({self.sd_step_s * 1000:.0f} ms)"
            f" = {self.realtime_wait_max_measured_steps:.2f} of the longest step that ran"
            f" ({self.longest_sd_step_s * 1000:.1f} ms);"
            f" {self.realtime_within_one_step:.1%} within one SD step (+10 ms)",
            f"peak VRAM: card {self.peak_card_mb:.0f} MB (capacity {self.card_mb}),"
            f" plan {self.peak_plan_mb} MB (budget {self.budget_mb})",
            f"loads {self.loads}, LRU evictions {self.evictions}, offloads {self.offloads},"
            f" restores {self.restores}",
        ]


async def soak(
    seed: int,
    *,
    jobs: int = 60,
    shape: SimShape | None = None,
    mean_gap_s: float = 0.01,
    timeout_s: float = 120.0,
    preempt_grace_steps: int = 2,
    min_turns: int = 0,
    placement: str = "inline",
    realtime_next_step: bool = True,
) -> SoakReport:
    """``jobs`` random chat / see / draw requests (seeded) while one device talks turn after
    turn (REALTIME ASR, LLM, TTS); a report, raising nothing on job errors. A run that does
    not finish within ``timeout_s`` (a deadlock) raises TimeoutError. ``preempt_grace_steps``:
    the scheduler setting (a resumed job's steps before it yields again: the default 2);
    ``realtime_next_step``: the scheduler setting (False: the behaviour before it, where grace
    and lane promotion let a REALTIME job wait several SD steps); ``placement``: VL and SD
    inline or in (thread-double) workers."""
    from core.models.gpu_memory import SimulatedGpu

    shape = shape or SimShape()
    rng = random.Random(seed)
    gpu = SimulatedGpu(shape.card_mb)
    step_log = StepLog()
    scheduler = Scheduler(
        SchedulerSettings(
            resources={"cpu": 2, "vram:0": shape.budget_mb},
            thread_workers=64,
            preempt_grace_steps=preempt_grace_steps,
            realtime_next_step=realtime_next_step,
            prewarm=False,
            drain_timeout_s=30.0,
            cancel_timeout_s=5.0,
        )
    )
    await scheduler.start()
    manager = ModelManager(
        sim_models_settings(shape, placement),
        scheduler,
        Path("unused"),
        factories=sim_factories(gpu, shape, step_log),
        gpus={"cuda:0": gpu},
        workers=ThreadWorker if placement == "process" else None,
    )
    inference = Inference(scheduler, manager, manager._settings)
    report = SoakReport(sd_step_s=shape.sd_step_s, budget_mb=shape.budget_mb, card_mb=shape.card_mb)
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def failed(kind: str, exc: BaseException) -> None:
        with lock:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if isinstance(exc, GpuOutOfMemory):
                report.out_of_memory += 1

    async def voice(i: int) -> None:
        owner = f"device:{i % 3}"
        await inference.transcribe(np.zeros(16_000, np.int16), lane=Lane.REALTIME, owner=owner)
        msgs = [ChatMessage("user", "你好")]
        handle = inference.chat(msgs, lane=Lane.REALTIME, owner=owner, max_tokens=12)
        text = "".join([piece async for piece in handle.stream()])
        speak = inference.speak(text, lane=Lane.REALTIME, owner=owner, sample_rate_hz=16_000)
        async for _chunk in speak.stream():
            pass

    async def chat(i: int) -> None:
        msgs = [ChatMessage("user", "讲个笑话")]
        handle = inference.chat(
            msgs, lane=Lane.INTERACTIVE, owner=f"qq:{i % 5}", max_tokens=shape.chat_tokens
        )
        async for _piece in handle.stream():
            pass

    async def see(i: int) -> None:
        await inference.see(b"img", "这是什么", owner=f"qq:{i % 5}")

    async def draw(i: int) -> None:
        steps = rng.randint(*shape.sd_steps)
        await inference.draw(DrawRequest("一只猫", steps=steps), owner=f"qq:{i % 5}").result()

    kinds = [(chat, 3), (see, 2), (draw, 2)]
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    done = asyncio.Event()

    async def talk() -> None:  # one device talking turn after turn while the rest arrives
        i = 0
        while not done.is_set() or i < min_turns:
            await run("voice", voice(i))
            i += 1
            await asyncio.sleep(rng.uniform(0.0, 4 * mean_gap_s))

    async def run(name: str, coro: Any) -> None:
        try:
            await coro
            with lock:
                report.completed += 1
        except XiaoyouError as exc:
            failed(name, exc)

    talker = asyncio.create_task(talk(), name="soak-voice")
    for i in range(jobs):
        fn = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
        tasks.append(asyncio.create_task(run(fn.__name__, fn(i)), name=f"soak-{i}"))
        await asyncio.sleep(rng.expovariate(1 / mean_gap_s))
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=timeout_s)
        done.set()
        await asyncio.wait_for(talker, timeout=timeout_s)
    finally:
        done.set()
        talker.cancel()
        report.seconds = time.monotonic() - started
        waits = [
            float(str(row["wait_s"]))
            for row in scheduler.jobs(lane="realtime", limit=100_000)
            if row["kind"] in ("asr", "llm", "tts")
        ]
        report.jobs = report.completed + sum(errors.values())
        report.realtime_jobs = len(waits)
        if waits:
            report.realtime_wait_max_s = max(waits)
            report.realtime_wait_p50_s = sorted(waits)[len(waits) // 2]
            bound = shape.sd_step_s + _STEP_SLACK_S
            report.realtime_within_one_step = sum(w <= bound for w in waits) / len(waits)
        report.errors = errors
        if waits:
            worst = max(
                (r for r in scheduler.jobs(lane="realtime", limit=100_000)),
                key=lambda r: float(str(r["wait_s"])),
            )
            report.worst = worst
            report.trace = [e.to_dict() for e in scheduler.trace()]
        report.peak_card_mb = gpu.peak_mb() or 0.0
        report.longest_sd_step_s = step_log.longest_sd_step_s
        row = manager.vram()["cuda:0"]
        report.peak_plan_mb = int(str(row["peak_mb"]))
        for key in ("offloads", "restores", "evictions", "loads"):
            setattr(report, key, int(str(row[key])))
        await manager.close()
        await scheduler.stop()
    return report
