"""Model workers in their own processes against the same work in the service's process.

    PYTHONPATH=. .venv/bin/python -m bench.workers_bench [--runs 3] [--chunks 2000]

Side by side in one run (medians of ``--runs``):
1. IPC per streamed chunk: a stand-in backend yielding N chunks (a 0.2 s 24 kHz PCM chunk,
   and a one-character text piece), consumed through the scheduler: a THREAD job
   (``emit_blocking`` + ``checkpoint_blocking`` per chunk, today's inline path) against an
   ASYNC job awaiting a worker process (``on_chunk`` = ``ctx.emit``, ``on_step`` =
   ``ctx.checkpoint``), and the bare generator in-process as the floor.
2. Per VL token and per SD step with the tiny random-weight models: the backend called in this
   process against the same backend in a worker (both with one torch thread); the difference
   is the worker's cost per step.
3. Event-loop lag (a 5 ms sleep probe's overshoot) while SD generates, in a thread of this
   process against in a worker: p50 / p99 / max and the ratio.
The tiny models measure the code path, not real model speed. The box is shared (2 cores, other
sessions running): read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PIL import Image

from bench.worker_doubles import ChunksSettings, create_chunks
from core.models.base import ModelBackend, never_cancelled
from core.models.sd import DrawRequest, SdSettings, create_sd
from core.models.vl import VlSettings, create_vl
from core.scheduler import ExecMode, JobContext, JobSpec, Scheduler, SchedulerSettings
from core.workers.base import LOAD, WorkerCall, WorkerSpec, no_chunk, no_step
from core.workers.hosted import job_steps
from core.workers.process import ProcessWorker

THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_PROBE_S = 0.005


def median(values: list[float]) -> float:
    return statistics.median(values)


async def started_worker(spec: WorkerSpec) -> ProcessWorker:
    worker = ProcessWorker(spec)
    await worker.start()
    await worker.call(WorkerCall(spec.name, LOAD), on_step=no_step, on_chunk=no_chunk)
    return worker


# -- 1. chunks through the scheduler ---------------------------------------------------------
async def chunk_costs(n: int, runs: int, method: str) -> dict[str, float]:
    scheduler = Scheduler(SchedulerSettings(resources={"cpu": 2}, thread_workers=2, prewarm=False))
    await scheduler.start()
    backend = create_chunks(ChunksSettings())
    gen: Callable[[int], Any] = getattr(backend, method)
    worker = await started_worker(WorkerSpec("chunks", create_chunks, ChunksSettings()))
    try:

        def thread_job(ctx: JobContext) -> None:
            for chunk in gen(n, check=ctx.checkpoint_blocking):
                ctx.emit_blocking(chunk)
                ctx.checkpoint_blocking()

        async def worker_job(ctx: JobContext) -> None:
            call = WorkerCall("chunks", method, (n,))
            await worker.call(call, on_step=job_steps(ctx), on_chunk=ctx.emit)

        async def consume(job: Callable[..., Any], mode: ExecMode) -> float:
            spec = JobSpec(kind="bench", mode=mode, resources={"cpu": 1}, preemptible=True)
            started = time.perf_counter()
            got = 0
            async for _ in scheduler.submit(job, spec=spec).stream():
                got += 1
            assert got == n
            return (time.perf_counter() - started) / n * 1e6

        floor, thread, proc = [], [], []
        for _ in range(runs):
            started = time.perf_counter()
            for _chunk in gen(n, check=never_cancelled):
                never_cancelled()
            floor.append((time.perf_counter() - started) / n * 1e6)
            thread.append(await consume(thread_job, ExecMode.THREAD))
            proc.append(await consume(worker_job, ExecMode.ASYNC))
        return {"floor_us": median(floor), "thread_us": median(thread), "worker_us": median(proc)}
    finally:
        await worker.stop(5.0)
        await scheduler.stop()


# -- 2. VL tokens and SD steps, in-process vs worker -----------------------------------------
def png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (20, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1

    async def step(self, _n: int) -> None:
        self.n += 1


async def per_step(
    inline: Callable[[Callable[[], None]], Any],
    worker: ProcessWorker,
    call: WorkerCall,
    runs: int,
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    here, there = [], []
    for _ in range(runs):
        counter = Counter()
        started = time.perf_counter()
        await loop.run_in_executor(None, inline, counter)
        here.append((time.perf_counter() - started) / max(1, counter.n) * 1e3)
        counter = Counter()
        started = time.perf_counter()
        await worker.call(call, on_step=counter.step, on_chunk=no_chunk)
        there.append((time.perf_counter() - started) / max(1, counter.n) * 1e3)
    return {"inline_ms": median(here), "worker_ms": median(there), "steps": counter.n}


# -- 3. event-loop lag -------------------------------------------------------------------------
async def lag_while(work: Callable[[], Awaitable[Any]]) -> list[float]:
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(_PROBE_S)
            lags.append((time.perf_counter() - started - _PROBE_S) * 1e3)

    task = asyncio.create_task(probe(), name="bench.lag-probe")
    try:
        await work()
    finally:
        done.set()
        await task
    return lags


def lag_row(lags: list[float]) -> dict[str, float]:
    ordered = sorted(lags)
    return {
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--vl-tokens", type=int, default=24)
    parser.add_argument("--sd-steps", type=int, default=8)
    parser.add_argument("--lag-draws", type=int, default=4)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # as the worker (models.worker_threads = 1)
    print(f"# workers_bench: runs={args.runs} (medians); torch threads 1 in both places")
    for method, what in (("pcm", "PCM chunk (4800 samples)"), ("tokens", "text piece")):
        row = await chunk_costs(args.chunks, args.runs, method)
        print(
            f"per {what}: floor {row['floor_us']:.1f} us, thread job {row['thread_us']:.1f} us,"
            f" worker job {row['worker_us']:.1f} us (worker/thread "
            f"{row['worker_us'] / row['thread_us']:.2f}x)"
        )

    from tests.models_llm.tiny_models import build_tiny_qwen2vl, build_tiny_sd

    with tempfile.TemporaryDirectory() as tmp:
        vl_settings = VlSettings(model_dir=build_tiny_qwen2vl(Path(tmp) / "vl"))
        sd_settings = SdSettings(model_dir=build_tiny_sd(Path(tmp) / "sd"))
        vl, sd = create_vl(vl_settings), create_sd(sd_settings)
        backends: list[ModelBackend] = [vl, sd]
        for backend in backends:
            backend.load()
        vl_worker = await started_worker(WorkerSpec("vl", create_vl, vl_settings, THREADS_ENV))
        sd_worker = await started_worker(WorkerSpec("sd", create_sd, sd_settings, THREADS_ENV))
        try:
            image = png(56)
            question = "Describe the picture."
            tokens = args.vl_tokens
            vl_row = await per_step(
                lambda check: vl.answer(image, question, max_tokens=tokens, check=check),
                vl_worker,
                WorkerCall("vl", "answer", (image, question), {"max_tokens": tokens}),
                args.runs,
            )
            vl_extra = vl_row["worker_ms"] - vl_row["inline_ms"]
            print(
                f"per VL token ({vl_row['steps']} steps): in-process {vl_row['inline_ms']:.2f} ms,"
                f" worker {vl_row['worker_ms']:.2f} ms (+{vl_extra:.2f}"
                f" ms, {vl_row['worker_ms'] / vl_row['inline_ms']:.2f}x)"
            )
            request = DrawRequest("a cat", width=64, height=64, steps=args.sd_steps, seed=1)
            sd_row = await per_step(
                lambda check: sd.generate(request, check=check),
                sd_worker,
                WorkerCall("sd", "generate", (request,)),
                args.runs,
            )
            sd_extra = sd_row["worker_ms"] - sd_row["inline_ms"]
            print(
                f"per SD step ({sd_row['steps']} checks): in-process {sd_row['inline_ms']:.2f} ms,"
                f" worker {sd_row['worker_ms']:.2f} ms (+{sd_extra:.2f}"
                f" ms, {sd_row['worker_ms'] / sd_row['inline_ms']:.2f}x)"
            )
            loop = asyncio.get_running_loop()
            vl_call = WorkerCall("vl", "answer", (image, question), {"max_tokens": tokens})
            sd_call = WorkerCall("sd", "generate", (request,))
            jobs: dict[str, tuple[Callable[[], Any], ProcessWorker, WorkerCall]] = {
                "SD": (lambda: sd.generate(request, check=never_cancelled), sd_worker, sd_call),
                "VL": (
                    lambda: vl.answer(image, question, max_tokens=tokens, check=never_cancelled),
                    vl_worker,
                    vl_call,
                ),
            }
            idle = lag_row(await lag_while(lambda: asyncio.sleep(1.0)))
            print(
                f"loop lag, idle: p50 {idle['p50_ms']:.2f} ms, p99 {idle['p99_ms']:.2f} ms,"
                f" max {idle['max_ms']:.2f} ms"
            )
            for model, (blocking, worker, call) in jobs.items():

                async def in_thread(blocking: Callable[[], Any] = blocking) -> None:
                    for _ in range(args.lag_draws):
                        await loop.run_in_executor(None, blocking)

                async def in_worker(
                    worker: ProcessWorker = worker, call: WorkerCall = call
                ) -> None:
                    for _ in range(args.lag_draws):
                        await worker.call(call, on_step=no_step, on_chunk=no_chunk)

                thread = lag_row(await lag_while(in_thread))
                proc = lag_row(await lag_while(in_worker))
                for where, row in (("a thread", thread), ("a worker", proc)):
                    print(
                        f"loop lag, {model} in {where}: p50 {row['p50_ms']:.2f} ms,"
                        f" p99 {row['p99_ms']:.2f} ms, max {row['max_ms']:.2f} ms"
                    )
                print(
                    f"loop lag {model} thread/worker: p50 "
                    f"{thread['p50_ms'] / max(proc['p50_ms'], 1e-3):.1f}x, p99 "
                    f"{thread['p99_ms'] / max(proc['p99_ms'], 1e-3):.1f}x, max "
                    f"{thread['max_ms'] / max(proc['max_ms'], 1e-3):.1f}x"
                )
        finally:
            await vl_worker.stop(5.0)
            await sd_worker.stop(5.0)
            for backend in backends:
                backend.unload()


if __name__ == "__main__":
    asyncio.run(main())
