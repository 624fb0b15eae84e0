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
whole series), in one run.
For contrast, the same slow chats run the way the OpenAI provider ran before this change
(blocking THREAD jobs holding a ``cpu`` slot) — the starvation the change removes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

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
def server_process(port: int) -> Iterator[str]:
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
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def isolation(slow: int, url: str, cache: Path, turns: int, *, old_path: bool) -> None:
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

    open_seen: list[int] = []

    async def series() -> list[float]:
        out = []
        for _ in range(turns):
            out.append(await first_audio_ms())
            open_seen.append(sum(h.status == "running" for h in remote))
            await asyncio.sleep(0.05)
        return out

    remote: list[Any] = []
    await first_audio_ms()
    idle = await series()

    remote = [inference.chat(HI, lane=Lane.INTERACTIVE, owner=f"qq:group:{i}") for i in range(slow)]
    consumers = [asyncio.ensure_future(_drain(h)) for h in remote]
    for _ in range(100):  # until every chat streams
        if sum(h.status == "running" for h in remote) >= slow:
            break
        await asyncio.sleep(0.1)
    open_seen.clear()
    busy_new = await series()
    in_flight = min(open_seen)
    for handle in remote:
        handle.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)

    busy_old = [float("nan")]
    if old_path:
        busy_old = await old_style_series(slow, scheduler, manager, series)
    await scheduler.stop()
    await manager.close()

    med = statistics.median
    print(f"\npart 2: REALTIME Piper TTS first audio, median of {turns} turns (shared box)")
    print(f"idle                                     {med(idle):8.1f} ms   1.00x")
    print(
        f"{slow} slow remote chats (>= {in_flight} running)   {med(busy_new):8.1f} ms"
        f"   {med(busy_new) / med(idle):.2f}x"
    )
    print(
        f"{slow} slow chats as THREAD+cpu jobs (old)   {med(busy_old):8.1f} ms"
        f"   {med(busy_old) / med(idle):.2f}x"
    )


async def old_style_series(
    slow: int,
    scheduler: Scheduler,
    manager: ModelManager,
    series: Callable[[], Awaitable[list[float]]],
) -> list[float]:
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
    busy_old = await series()
    for handle in old:
        handle.cancel()
    await asyncio.gather(*(h.result() for h in old), return_exceptions=True)
    await asyncio.sleep(0.2)  # cancelled THREAD jobs return at their next check
    llm.unload()
    return busy_old


async def _drain(handle: Any) -> None:
    async for _ in handle.stream():
        pass


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread() as server:
        cache = Path(tmp)
        if not args.skip_overhead:
            await overhead(args.calls, server.url, server.edge_url, cache)
    with tempfile.TemporaryDirectory() as tmp, server_process(args.port) as url:
        await isolation(args.slow, url, Path(tmp), args.turns, old_path=not args.skip_old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-old", action="store_true", help="part 2 without the old path")
    parser.add_argument("--port", type=int, default=18097, help="part 2's stand-in process")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
