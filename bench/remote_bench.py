"""Remote providers: scheduler-path overhead and isolation of local voice from slow cloud APIs.

    .venv/bin/python -m bench.remote_bench                    # both parts
    .venv/bin/python -m bench.remote_bench --calls 200 --slow 50

Part 1, per remote provider (OpenAI-compatible LLM, Ollama native, OpenAI ASR, OpenAI TTS,
Edge TTS through edge-tts): the same request against the same loopback stand-in server
(tests/remote/servers.py, on its own thread), called directly on the backend vs through
``Inference`` (an ASYNC scheduler job holding ``remote:<kind>``); medians and their ratio.

Part 2: a REALTIME voice job (the embedded Piper TTS, a THREAD job holding a ``cpu`` slot:
what a device turn's first audio waits for) timed to its first audio chunk, idle vs while
``--slow`` remote LLM chats are in flight (300 tokens 100 ms apart: they stream through the
whole series), in one run, in interleaved rounds; as a control the same chats streamed by
another process (the box's CPU cost without this process's loop and GIL); with each row the
event loop's lag and the CPU used by this process, the stand-in server and the control client.
For contrast, the same slow chats run the way the OpenAI provider ran before this change
(blocking THREAD jobs holding a ``cpu`` slot) — the starvation the change removes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from core.models.inference import Inference
from core.models.llm import ChatMessage, Llm
from core.models.manager import ModelManager
from core.models.settings import ModelsSettings, with_remote_resources
from core.scheduler import ExecMode, JobContext, JobSpec, Lane, Scheduler, SchedulerSettings
from tests.remote.servers import serve_in_thread

HI = [ChatMessage("user", "你好")]
PCM = np.zeros(16_000, dtype=np.float32)


async def timed(fn: Callable[[], Awaitable[Any]], calls: int) -> float:
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


async def overhead(calls: int, url: str, edge_url: str, cache: Path) -> None:
    providers: dict[str, dict[str, Any]] = {
        "llm openai": {"llm": {"provider": "openai", "base_url": url, "model": "m"}},
        "llm ollama": {"llm": {"provider": "ollama", "base_url": url, "model": "m"}},
        "asr openai": {"asr": {"provider": "openai", "openai": {"base_url": url}}},
        "tts openai": {"tts": {"provider": "openai", "openai": {"base_url": url}}},
        "tts edge": {"tts": {"provider": "edge", "edge": {"wss_url": edge_url}}},
    }
    print(f"part 1: median per call over {calls} sequential calls (shared, loaded box)")
    print(f"{'provider':<12} {'direct ms':>10} {'scheduled ms':>13} {'ratio':>6}")
    for name, models in providers.items():
        await one_provider(name, models, calls, cache)


async def one_provider(name: str, models: dict[str, Any], calls: int, cache: Path) -> None:
    settings = ModelsSettings.model_validate(models)
    base = SchedulerSettings(resources={"cpu": 2}, prewarm=False)
    scheduler = Scheduler(with_remote_resources(base, settings))
    await scheduler.start()
    manager = ModelManager(settings, scheduler, cache)
    inference = Inference(scheduler, manager, settings)
    kind = name.split()[0]
    backend: Any = manager.backend(kind, object)
    await manager.load(kind)
    if kind == "llm":

        async def direct() -> None:
            async for _ in backend.astream_chat(HI, max_tokens=16, temperature=0):
                pass

        async def scheduled() -> None:
            async for _ in inference.chat(HI, lane=Lane.INTERACTIVE, owner="b").stream():
                pass
    elif kind == "asr":

        async def direct() -> None:
            await backend.atranscribe(PCM)

        async def scheduled() -> None:
            await inference.transcribe(PCM, lane=Lane.REALTIME, owner="b")
    else:

        async def direct() -> None:
            async for _ in backend.asynthesize("你好。", sample_rate_hz=24_000):
                pass

        async def scheduled() -> None:
            handle = inference.speak("你好。", lane=Lane.REALTIME, owner="b", sample_rate_hz=24_000)
            async for _ in handle.stream():
                pass

    await direct()
    await scheduled()  # warm both paths
    rounds = [(await timed(direct, calls), await timed(scheduled, calls)) for _ in range(2)]
    d = min(r[0] for r in rounds)
    s = min(r[1] for r in rounds)
    print(f"{name:<12} {d:>10.2f} {s:>13.2f} {s / d:>6.2f}")
    await scheduler.stop()
    await manager.close()


@contextlib.contextmanager
def server_process(port: int) -> Iterator[tuple[str, psutil.Process]]:
    """The stand-in in its own process (300-word replies, 100 ms per word), so its CPU use is
    not counted against this process's loop."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.remote.servers",
            "--port",
            str(port),
            "--token-delay-s",
            "0.1",
            "--words",
            "300",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "stand-in model services on ..."
        yield f"http://127.0.0.1:{port}", psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def client_process(url: str, slow: int) -> Iterator[psutil.Process]:
    """``slow`` chats streamed by the same provider code in another process: what the box's
    CPU pays for them, without this process's loop or GIL (the control row)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.remote_bench", "--client", url, "--slow", str(slow)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "streaming N chats"
        yield psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


async def client_main(url: str, slow: int) -> None:
    """``--client``: stream ``slow`` chats again and again until terminated."""
    from core.models.llm import LlmSettings
    from core.models.openai_compat.llm import OpenAiCompatLlm

    llm = OpenAiCompatLlm(LlmSettings(provider="openai", base_url=url, model="m"))
    await llm.aload()
    started = 0
    all_started = asyncio.Event()

    async def chat() -> None:
        nonlocal started
        while True:
            first = True
            async for _ in llm.astream_chat(HI, max_tokens=16, temperature=0):
                if first:
                    started, first = started + 1, False
                    if started >= slow:
                        all_started.set()
            await asyncio.sleep(0)

    tasks = [asyncio.ensure_future(chat()) for _ in range(slow)]
    await all_started.wait()
    print(f"streaming {slow} chats", flush=True)
    await asyncio.gather(*tasks)


@dataclass
class Series:
    first_audio_ms: list[float] = field(default_factory=list)
    lag_p50_ms: list[float] = field(default_factory=list)
    lag_p99_ms: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # process → % of one core
    cpu_us_per_token: list[float] = field(default_factory=list)  # this process, per token


async def isolation(
    slow: int,
    url: str,
    server: psutil.Process,
    cache: Path,
    turns: int,
    rounds: int,
    *,
    old_path: bool,
    profile: bool,
    profile_budget: int | None = None,
) -> None:
    settings = ModelsSettings.model_validate(
        {
            "llm": {"provider": "openai", "base_url": url, "model": "m"},
            "remote": {"llm_concurrency": slow},
        }
    )
    base = SchedulerSettings(resources={"cpu": 2}, thread_workers=4, prewarm=True)
    scheduler = Scheduler(with_remote_resources(base, settings))
    await scheduler.start()
    manager = ModelManager(settings, scheduler, cache)
    inference = Inference(scheduler, manager, settings)
    await manager.load("tts")
    await manager.load("llm")
    sentence = "Hello there."
    me = psutil.Process()

    async def first_audio_ms() -> float:
        t0 = time.perf_counter()
        handle = inference.speak(
            sentence, lane=Lane.REALTIME, owner="device:1", sample_rate_hz=24_000
        )
        stream = handle.stream()
        await stream.__anext__()
        ms = (time.perf_counter() - t0) * 1000
        async for _ in stream:
            pass
        return ms

    async def series(into: Series, others: dict[str, psutil.Process]) -> None:
        procs = {"front": me, "server": server, **others}
        cpu0 = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
        t0 = time.perf_counter()
        scheduler.loop_lag.reset()
        for _ in range(turns):
            into.first_audio_ms.append(await first_audio_ms())
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - t0
        lag = scheduler.loop_lag.snapshot()
        into.lag_p50_ms.append(float(lag.get("p50", 0.0)))
        into.lag_p99_ms.append(float(lag.get("p99", 0.0)))
        for k, p in procs.items():
            used = sum(p.cpu_times()[:2]) - cpu0[k]
            into.cpu.setdefault(k, []).append(100 * used / wall)

    async def in_process(into: Series, budget: int, *, profile: bool = False) -> None:
        scheduler.define_resource("remote:llm", budget)  # models.remote.llm_concurrency
        remote = [
            inference.chat(HI, lane=Lane.INTERACTIVE, owner=f"qq:group:{i}") for i in range(slow)
        ]
        tokens = [0]
        consumers = [asyncio.ensure_future(_drain(h, tokens)) for h in remote]
        for _ in range(100):  # until every chat that may run streams
            if sum(h.status == "running" for h in remote) >= min(slow, budget):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()  # the loop thread only
        cpu0, tokens0 = sum(me.cpu_times()[:2]), tokens[0]
        await series(into, {})
        if tokens[0] > tokens0:
            into.cpu_us_per_token.append(
                1e6 * (sum(me.cpu_times()[:2]) - cpu0) / (tokens[0] - tokens0)
            )
        if profiler is not None:
            profiler.disable()
            print(f"\nprofile of the loop thread, {slow} remote chats streaming (own time):")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(14)
        for handle in remote:
            handle.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        await asyncio.sleep(1.0)  # the cancelled jobs close their streams before the next row

    async def other_process(into: Series) -> None:
        with client_process(url, slow) as client:
            await asyncio.sleep(0.5)
            await series(into, {"client": client})

    await first_audio_ms()
    if profile:  # a round of its own: the profiler slows the loop, so it is not counted
        await in_process(Series(), profile_budget or slow, profile=True)
    idle, busy, bounded, control = Series(), Series(), Series(), Series()
    default_budget = ModelsSettings().remote.llm_concurrency
    for r in range(rounds):  # interleaved: the box's other load drifts alike for each row
        await series(idle, {})
        await in_process(busy, slow)
        await in_process(bounded, default_budget)
        await other_process(control)
        print(f"round {r + 1}/{rounds} done", flush=True)

    busy_old = [float("nan")]
    if old_path:
        old = Series()
        await old_style_series(slow, scheduler, manager, lambda: series(old, {}))
        busy_old = old.first_audio_ms
    await scheduler.stop()
    await manager.close()

    med = statistics.median
    base_ms = med(idle.first_audio_ms)
    n = turns * rounds
    print(
        f"\npart 2: REALTIME Piper TTS first audio, median of {n} turns in {rounds} interleaved"
        f" rounds (shared box, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"{'condition':<44} {'first audio':>11} {'ratio':>6} {'lag p50/p99 ms':>15}"
        f" {'cpu % front/server/client':>26} {'front µs/token':>14}"
    )

    def row(name: str, got: Series) -> None:
        ms = med(got.first_audio_ms)
        cpu = "/".join(
            f"{med(got.cpu[k]):.0f}" if k in got.cpu else "-" for k in ("front", "server", "client")
        )
        lag = f"{med(got.lag_p50_ms):.1f}/{med(got.lag_p99_ms):.1f}" if got.lag_p50_ms else "-"
        per_token = f"{med(got.cpu_us_per_token):.0f}" if got.cpu_us_per_token else "-"
        print(f"{name:<44} {ms:>8.1f} ms {ms / base_ms:>5.2f}x {lag:>15} {cpu:>26} {per_token:>14}")

    row("idle", idle)
    row(f"{slow} slow remote chats in this process", busy)
    row(f"{slow} submitted, default budget {default_budget} streaming", bounded)
    row(f"{slow} slow remote chats in another process", control)
    if old_path:
        ms, name = med(busy_old), f"{slow} slow chats as THREAD+cpu jobs (old)"
        print(f"{name:<44} {ms:>8.1f} ms {ms / base_ms:>5.2f}x")


async def old_style_series(
    slow: int,
    scheduler: Scheduler,
    manager: ModelManager,
    series: Callable[[], Awaitable[None]],
) -> None:
    llm: Llm = manager.backend("llm", Llm)
    llm.load()  # the blocking bridge: what a THREAD job of the old provider did

    def old_style(ctx: JobContext) -> None:
        for _ in llm.stream_chat(HI, max_tokens=16, temperature=0, check=ctx.checkpoint_blocking):
            pass

    old = [
        scheduler.submit(
            old_style,
            spec=JobSpec(
                kind="llm-thread",
                lane=Lane.INTERACTIVE,
                owner=f"qq:group:{i}",
                mode=ExecMode.THREAD,
                resources={"cpu": 1},
            ),
        )
        for i in range(slow)
    ]
    await asyncio.sleep(0.3)
    await series()
    for handle in old:
        handle.cancel()
    await asyncio.gather(*(h.result() for h in old), return_exceptions=True)
    await asyncio.sleep(0.2)  # cancelled THREAD jobs return at their next check
    llm.unload()


async def _drain(handle: Any, tokens: list[int] | None = None) -> None:
    async for _ in handle.stream():
        if tokens is not None:
            tokens[0] += 1


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread() as server:
        cache = Path(tmp)
        if not args.skip_overhead:
            await overhead(args.calls, server.url, server.edge_url, cache)
    with tempfile.TemporaryDirectory() as tmp, server_process(args.port) as (url, server):
        await isolation(
            args.slow,
            url,
            server,
            Path(tmp),
            args.turns,
            args.rounds,
            old_path=not args.skip_old,
            profile=args.profile,
            profile_budget=args.profile_budget,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-old", action="store_true", help="part 2 without the old path")
    parser.add_argument("--port", type=int, default=18097, help="part 2's stand-in process")
    parser.add_argument("--rounds", type=int, default=3, help="part 2: interleaved rounds")
    parser.add_argument("--profile", action="store_true", help="part 2: cProfile the loop")
    parser.add_argument("--profile-budget", type=int, help="remote:llm of the profiled round")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the control row's own process
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(args.client, args.slow))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
