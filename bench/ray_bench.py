"""Ray scale-out, measured side by side in one run (issue 15).

1. Per-job overhead of a model call through a Ray actor vs a local worker process
   (:class:`core.workers.process.ProcessWorker`), both as ASYNC scheduler jobs on the same
   stand-in backend (``echo``: no work; ``tick``: N empty streamed steps): ratio per job and
   per step.
2. Throughput and REALTIME start wait (p50/p99) with 1 replica (one box) vs 2 replicas (two
   boxes) vs 2 replicas with ``background_replicas = 1`` (one kept free for REALTIME work),
   stand-in model work (``time.sleep`` steps: GPU time that holds no CPU of this box), a
   BACKGROUND flood plus a REALTIME job on the same model every ``--rt-every-s``.
3. Front-process RSS and threads without Ray (scheduler running, a worker process started) and
   after joining the cluster with the pool started.

The cluster runs on loopback inside ``unshare --net --pid --fork --mount-proc`` (root; the
script re-executes itself there): a head (box1, ``ray start --head``) and box2 (``ray start``),
token authentication on. Usage: ``python -m bench.ray_bench [--jobs 300] [--flood 40]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INSIDE = "XIAOYOU_RAY_BENCH_INSIDE"
PORT = 6390


def _reexec() -> int:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("needs root and unshare (a loopback-only network namespace)", file=sys.stderr)
        return 2
    env = {**os.environ, INSIDE: "1", "PYTHONPATH": str(ROOT)}
    command = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
               sys.executable, "-m", "bench.ray_bench", *sys.argv[1:]]  # fmt: skip
    return subprocess.run(command, env=env, cwd=ROOT).returncode


def _ray_start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    ray = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen(
        [ray, "start", "--block", "--disable-usage-stats", "--num-cpus=1", *args],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_port(port: int, timeout_s: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


def _say(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def _rss_threads() -> dict[str, float]:
    """RSS, OS threads (Ray's core runs C++ threads) and Python threads of this process."""
    import psutil

    proc = psutil.Process()
    return {
        "rss_mb": round(proc.memory_info().rss / 2**20, 1),
        "os_threads": proc.num_threads(),
        "python_threads": threading.active_count(),
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _overhead(scheduler: Any, run_call: Any, jobs: int, steps: int) -> dict[str, float]:
    from core.scheduler import ExecMode, JobContext, JobSpec
    from core.workers.base import WorkerCall

    async def one(call: WorkerCall) -> float:
        async def job(ctx: JobContext) -> Any:
            return await run_call(ctx, call)

        started = time.perf_counter()
        spec = JobSpec(kind="bench", mode=ExecMode.ASYNC, stream_buffer=steps + 8)  # unread
        await scheduler.submit(job, spec=spec).result()
        return time.perf_counter() - started

    echo = WorkerCall("llm", "echo", (1,))
    tick = WorkerCall("llm", "tick", (steps,), stream=True)
    for _ in range(20):  # warm up
        await one(echo)
    per_job = [await one(echo) for _ in range(jobs)]
    per_stream = [await one(tick) for _ in range(max(10, jobs // 10))]
    job_ms = statistics.median(per_job) * 1000
    stream_ms = statistics.median(per_stream) * 1000
    return {
        "job_ms_p50": round(job_ms, 3),
        "job_ms_p99": round(_pct(per_job, 0.99) * 1000, 3),
        "step_ms": round(max(0.0, stream_ms - job_ms) / steps, 4),
    }


async def _load(pool: Any, scheduler: Any, flood: int, rt_jobs: int, rt_every_s: float) -> dict:
    from core.scheduler import ExecMode, JobContext, JobSpec, Lane
    from core.workers.base import WorkerCall

    waits: list[float] = []

    def submit(lane: Lane, words: int, step_s: float, owner: str) -> Any:
        submitted = time.perf_counter()

        async def job(ctx: JobContext) -> Any:
            if lane is Lane.REALTIME:
                waits.append(time.perf_counter() - submitted)
            call = WorkerCall("llm", "generate", (["x"] * words, step_s), stream=True)
            return await pool.call(ctx, "llm", call)

        spec = JobSpec(
            kind="bench", lane=lane, owner=owner, mode=ExecMode.ASYNC,
            resources=pool.job_resources("llm", lane), preemptible=True,
            keep_on_yield=pool.kept_while_paused("llm"), stream_buffer=64,
        )  # fmt: skip
        return scheduler.submit(job, spec=spec)

    started = time.perf_counter()
    background = [submit(Lane.BACKGROUND, 5, 0.04, f"qq:{i % 8}") for i in range(flood)]
    realtime = []
    for i in range(rt_jobs):
        await asyncio.sleep(rt_every_s)
        realtime.append(submit(Lane.REALTIME, 2, 0.02, f"device:{i % 4}"))
    await asyncio.gather(*(h.result() for h in background + realtime))
    took = time.perf_counter() - started
    return {
        "jobs_per_s": round((flood + rt_jobs) / took, 2),
        "seconds": round(took, 2),
        "rt_wait_ms_p50": round(statistics.median(waits) * 1000, 1),
        "rt_wait_ms_p99": round(_pct(waits, 0.99) * 1000, 1),
    }


async def _inside(args: argparse.Namespace) -> dict[str, Any]:
    from core.scheduler import Scheduler, SchedulerSettings
    from core.workers.base import WorkerSpec
    from core.workers.process import ProcessWorker
    from tests.ray.standin import StandInSettings, make_standin

    token = secrets.token_hex(16)
    env = {**os.environ, "HOME": tempfile.mkdtemp(), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    boxes = [
        _ray_start(["--head", f"--port={PORT}", "--include-dashboard=false",
                    '--resources={"vram_mb": 1000}', "--labels=xiaoyou-node=box1"], env),
    ]  # fmt: skip
    results: dict[str, Any] = {"load_average": os.getloadavg()}
    scheduler = Scheduler(SchedulerSettings(resources={"cpu": 2}, runners=256))
    await scheduler.start()
    spec = WorkerSpec("llm", make_standin, StandInSettings())
    local = ProcessWorker(spec)
    _say("starting the local worker process")
    await local.start()
    from core.workers.base import LOAD, no_chunk, no_step
    from core.workers.base import WorkerCall as Call

    await local.call(Call("llm", LOAD), on_step=no_step, on_chunk=no_chunk)
    results["front_without_ray"] = _rss_threads()

    async def local_call(ctx: Any, call: Any) -> Any:
        async def step(n: int) -> None:
            await ctx.checkpoint()

        return await local.call(call, on_step=step, on_chunk=ctx.emit)

    _say("local worker: overhead")
    results["local_process"] = await _overhead(scheduler, local_call, args.jobs, args.steps)

    from core.workers.ray_pool import RayPool
    from core.workers.ray_settings import RaySettings

    def settings(workers: list[dict[str, Any]]) -> RaySettings:
        return RaySettings(address=f"127.0.0.1:{PORT}", auth_token=token, workers=workers)

    _say("waiting for the head")
    _wait_port(PORT)  # the head's GCS is up before the front joins
    joined = time.perf_counter()
    one = RayPool(settings([{"name": "one", "model": "llm", "vram_mb": 1000}]), scheduler,
                  {"llm": spec})  # fmt: skip
    _say("joining the cluster, starting one actor")
    await one.start()
    results["join_and_start_s"] = round(time.perf_counter() - joined, 2)
    results["front_with_ray"] = _rss_threads()

    async def ray_call(ctx: Any, call: Any) -> Any:
        return await one.call(ctx, "llm", call)

    _say("ray actor: overhead")
    results["ray_actor"] = await _overhead(scheduler, ray_call, args.jobs, args.steps)
    results["ratio_job"] = round(
        results["ray_actor"]["job_ms_p50"] / results["local_process"]["job_ms_p50"], 2
    )
    results["ratio_step"] = round(
        results["ray_actor"]["step_ms"] / max(1e-6, results["local_process"]["step_ms"]), 2
    )
    _say("load on one box")
    results["one_box"] = await _load(one, scheduler, args.flood, args.rt_jobs, args.rt_every_s)
    await one.stop()

    boxes.append(
        _ray_start([f"--address=127.0.0.1:{PORT}", '--resources={"vram_mb": 1000}',
                    "--labels=xiaoyou-node=box2"], env)
    )  # fmt: skip
    _say("box2 joins; two actors (the second waits for box2's vram_mb)")
    two = RayPool(
        settings([{"name": "two", "model": "llm", "vram_mb": 1000, "replicas": 2}]),
        scheduler, {"llm": spec},
    )  # fmt: skip
    await two.start()
    results["two_boxes_nodes"] = sorted(
        {r.labels.get("xiaoyou-node", "?") for r in two.replicas("llm")}
    )
    _say("load on two boxes")
    results["two_boxes"] = await _load(two, scheduler, args.flood, args.rt_jobs, args.rt_every_s)
    results["ratio_throughput_2_vs_1"] = round(
        results["two_boxes"]["jobs_per_s"] / results["one_box"]["jobs_per_s"], 2
    )
    await two.stop()
    _say("two replicas, background_replicas = 1 (one kept free for REALTIME)")
    kept = RayPool(
        settings([{"name": "kept", "model": "llm", "vram_mb": 1000, "replicas": 2,
                   "background_replicas": 1}]),
        scheduler, {"llm": spec},
    )  # fmt: skip
    await kept.start()
    results["two_kept_free"] = await _load(
        kept, scheduler, args.flood, args.rt_jobs, args.rt_every_s
    )
    for name in ("two_boxes", "two_kept_free"):
        results[f"ratio_rt_p99_{name}_vs_one"] = round(
            results[name]["rt_wait_ms_p99"] / max(0.1, results["one_box"]["rt_wait_ms_p99"]), 3
        )
    await kept.stop()
    await scheduler.stop()
    await local.stop(5.0)
    for box in boxes:
        os.killpg(box.pid, 9)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="calls per overhead figure")
    parser.add_argument("--steps", type=int, default=50, help="streamed steps per tick call")
    parser.add_argument("--flood", type=int, default=40, help="BACKGROUND jobs (5 x 40 ms)")
    parser.add_argument("--rt-jobs", type=int, default=20, help="REALTIME jobs (2 x 20 ms)")
    parser.add_argument("--rt-every-s", type=float, default=0.15)
    args = parser.parse_args()
    if os.environ.get(INSIDE) != "1":
        return _reexec()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    code = 1
    try:
        results = asyncio.run(_inside(args))
        print(json.dumps(results, indent=2, ensure_ascii=False), flush=True)
        code = 0
    except Exception:  # noqa: BLE001 - reported, then the namespace goes down with us
        traceback.print_exc()
    finally:
        # this process is the namespace's PID 1: leaving at once (no Ray atexit hooks, which
        # can hang without the head) makes the kernel kill every Ray process it started
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
