"""Event-loop lag of ``xiaoyou serve`` under OneBot floods, this tree against a baseline commit.

    PYTHONPATH=. .venv/bin/python -m bench.onebot_loop_lag --baseline 8129efb --unscreened
    PYTHONPATH=. .venv/bin/python -m bench.onebot_loop_lag --profile   # where the loop's time goes

For each tree (``--baseline REV`` is unpacked with ``git archive`` into a temporary folder) a
real ``xiaoyou serve`` (``python -m bot.cli serve --config``, the real NoneBot2 and OneBot v11
adapter, no model loaded: warm start off and no message asks for a model) runs on a free
loopback port. A NapCat-like client connects to ``/onebot/v11/ws`` and, one phase after the
other, sends

* ``chatter``: ordinary group chatter not addressed to the bot, ``--rate`` messages per
  second for ``--seconds`` (the issue: 100 per second → 1.66 s lag);
* ``malformed``: ``--malformed`` bad events in one burst (JSON that is no event, events of
  the right shape with fields of the wrong type, and last frames that are not JSON at all;
  the issue: 1,000 → 3.8–5.6 s).

The row ``chatter backlog`` is the time after the chatter stopped until the server answered
promptly again (what the chatter left queued).

Meanwhile a probe asks ``GET /healthz`` every 20 ms on one kept-alive connection: its extra
latency is the lag every socket of the server suffers (p50/p99/max per phase, a request
counted in the phase it was sent in; before the malformed burst the script waits until the
chatter's backlog is gone). Every tree is measured by this same script on the same box, one
after the other. ``--profile`` runs the
current tree's server under cProfile and prints the functions that took the loop's time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import pstats
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
SELF_ID = 10001
TOKEN = "bench-onebot-token"
PROBE_INTERVAL_S = 0.02
UNSCREENED = "XIAOYOU_BOT__SCREEN_UNADDRESSED"
SETTLED_S = 0.1
CHATTER = (
    "今天晚上吃什么好呢？",
    "哈哈哈哈哈，笑死我了",
    "周末有人一起去爬山吗",
    "明天会下雨吗？记得带伞",
    "这个视频太好看了",
    "收到，我下午过去",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_message(i: int, text: str, **fields: Any) -> dict[str, Any]:
    user = 20_000 + i % 500
    event = {
        "time": int(time.time()),
        "self_id": SELF_ID,
        "post_type": "message",
        "message_type": "group",
        "sub_type": "normal",
        "message_id": 1_000_000 + i,
        "group_id": 700_000 + i % 20,
        "user_id": user,
        "anonymous": None,
        "message": [{"type": "text", "data": {"text": text}}],
        "raw_message": text,
        "font": 14,
        "sender": {"user_id": user, "nickname": f"群友{i % 500}", "card": "", "role": "member"},
    }
    event.update(fields)
    return event


def chatter_frame(i: int) -> str:
    message = _group_message(i, CHATTER[i % len(CHATTER)])
    if i % 10 == 3:  # a face or an image between words, as real chatter has
        message["message"].append({"type": "face", "data": {"id": "14"}})
    return json.dumps(message, ensure_ascii=False)


def malformed_frame(i: int) -> str:
    kind = i % 5
    if kind == 0:
        return "{bad json " + str(i)
    if kind == 1:
        return json.dumps([i, "not an event"])
    if kind == 2:
        return json.dumps({"post_type": "notice", "junk": i})
    if kind == 3:  # the right shape, wrong types inside
        event = _group_message(i, "x", sender="not a sender", message_id="abc")
        return json.dumps(event, ensure_ascii=False)
    event = _group_message(i, "y", message=[{"type": "text", "data": 5}], group_id={"x": 1})
    return json.dumps(event, ensure_ascii=False)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Probe:
    """GET /healthz every PROBE_INTERVAL_S; the latency of each answer is one lag sample,
    counted in the phase during which the request was sent (a stall that outlasts its phase
    still counts where it began)."""

    def __init__(self, http: str) -> None:
        self._http = http
        self.samples: list[tuple[float, float]] = []  # (sent at, latency)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self._http, timeout=60) as client:
            await client.get("/healthz")
            while not stop.is_set():
                started = time.monotonic()
                await client.get("/healthz")
                self.samples.append((started, time.monotonic() - started))
                await asyncio.sleep(PROBE_INTERVAL_S)

    async def settled(self, timeout_s: float = 120.0) -> None:
        """Until a request sent from now on is answered within SETTLED_S: the backlog of
        the previous phase is gone, so it is not counted in the next one."""
        since = time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            if any(at >= since and lag < SETTLED_S for at, lag in self.samples):
                return
            await asyncio.sleep(0.05)

    def between(self, start: float, end: float) -> list[float]:
        return [lag for at, lag in self.samples if start <= at < end]


def _config(tmp: Path, port: int) -> Path:
    path = tmp / "xiaoyou.toml"
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
data_dir = "{tmp / "data"}"
[admin]
token = "bench-admin"
[bot]
onebot_access_token = "{TOKEN}"
[models]
warm_start = false
[scheduler]
prewarm = false
""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def served(
    tree: Path, tmp: Path, *, profile: Path | None, env_extra: dict[str, str]
) -> AsyncIterator[str]:
    port = _free_port()
    config = _config(tmp, port)
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "bot.cli", "serve", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", **env_extra}
    log = (tmp / "server.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    http = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient() as client:
            while True:
                if proc.returncode is not None:
                    raise RuntimeError((tmp / "server.log").read_text())
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{http}/healthz", timeout=1)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                await asyncio.sleep(0.2)
        yield http
    finally:
        if proc.returncode is None:
            # uvicorn re-raises the signal after its shutdown: SIGINT lets cProfile write
            proc.send_signal(signal.SIGINT if profile is not None else signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def _answer_actions(ws: Any) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for frame in ws:
            action = json.loads(frame)
            if "echo" in action:
                answer = {"status": "ok", "retcode": 0, "data": {}, "echo": action["echo"]}
                await ws.send(json.dumps(answer))


async def measure(http: str, args: argparse.Namespace) -> dict[str, list[float]]:
    headers = {
        "X-Self-ID": str(SELF_ID),
        "X-Client-Role": "Universal",
        "Authorization": f"Bearer {TOKEN}",
    }
    url = http.replace("http://", "ws://") + "/onebot/v11/ws"
    probe = Probe(http)
    stop = asyncio.Event()
    marks: list[tuple[str, float]] = []
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        answers = asyncio.create_task(_answer_actions(ws), name="bench-answers")
        probing = asyncio.create_task(probe.run(stop), name="bench-probe")
        marks.append(("idle", time.monotonic()))
        await asyncio.sleep(1.0)
        count = int(args.rate * args.seconds)
        started = time.monotonic()
        marks.append(("chatter", started))
        for i in range(count):  # paced: message i leaves at i / rate
            await asyncio.sleep(max(0.0, started + i / args.rate - time.monotonic()))
            await ws.send(chatter_frame(i))
        await asyncio.sleep(1.0)
        marks.append(("chatter backlog", time.monotonic()))
        await probe.settled()
        marks.append(("malformed", time.monotonic()))
        # frames that are not JSON last: upstream, the first of them ends the bot's session
        for i in sorted(range(args.malformed), key=lambda i: i % 5 == 0):
            await ws.send(malformed_frame(i))
        await asyncio.sleep(2.0)
        marks.append(("end", time.monotonic()))
        stop.set()
        await asyncio.wait_for(probing, 120)  # the last probe waits out any stall
        answers.cancel()
    return {
        name: probe.between(start, end) for (name, start), (_, end) in itertools.pairwise(marks)
    }


def _row(name: str, phase: str, samples: list[float]) -> str:
    p50, p99 = _percentile(samples, 50) * 1e3, _percentile(samples, 99) * 1e3
    top = max(samples, default=float("nan")) * 1e3
    return f"| {name} | {phase} | {len(samples)} | {p50:.1f} | {p99:.1f} | {top:.1f} |"


def _unpack(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _print_profile(path: Path, limit: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    print(out.getvalue(), file=sys.stderr)
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("cumulative").print_stats(limit)
    print(out.getvalue(), file=sys.stderr)


async def main(args: argparse.Namespace) -> int:
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="loop-lag-") as tmp_name:
        tmp = Path(tmp_name)
        trees: list[tuple[str, Path, dict[str, str]]] = []
        if args.baseline:
            base = tmp / "baseline"
            base.mkdir()
            trees.append((f"baseline {args.baseline}", _unpack(args.baseline, base), {}))
        if args.unscreened:  # what the log level and the stricter event check alone give
            trees.append(("this tree, screen off", ROOT, {UNSCREENED: "false"}))
        trees.append(("this tree", ROOT, {}))
        for name, tree, env_extra in trees:
            work = tmp / f"run-{len(results)}"
            work.mkdir()
            profile = (
                work / "serve.prof" if args.profile and not env_extra and tree == ROOT else None
            )
            async with served(tree, work, profile=profile, env_extra=env_extra) as http:
                results[name] = await measure(http, args)
            print(f"done: {name}", file=sys.stderr)
            if profile is not None and profile.exists():
                _print_profile(profile, args.profile_lines)
    print(
        f"chatter: {args.rate:.0f} group messages/s for {args.seconds:.0f} s, not addressed to"
        f" the bot; malformed: {args.malformed} bad events at once. /healthz probe every"
        f" {PROBE_INTERVAL_S * 1e3:.0f} ms, latency in ms."
    )
    print("| tree | phase | samples | p50 | p99 | max |")
    print("|---|---|---:|---:|---:|---:|")
    for name, phases in results.items():
        for phase, samples in phases.items():
            print(_row(name, phase, samples))
    if args.baseline and len(results) >= 2:
        old, new = results[f"baseline {args.baseline}"], results["this tree"]
        for phase in ("chatter", "malformed"):
            for label, q in (("p99", 99.0), ("max", 100.0)):
                before = _percentile(old[phase], q) if q < 100 else max(old[phase], default=0)
                after = _percentile(new[phase], q) if q < 100 else max(new[phase], default=0)
                ratio = before / after if after else float("inf")
                print(f"{phase} {label}: {before * 1e3:.1f} → {after * 1e3:.1f} ms ({ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="", help="a git revision to measure first")
    parser.add_argument("--rate", type=float, default=100.0, help="chatter messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--malformed", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="cProfile this tree's server")
    parser.add_argument(
        "--unscreened", action="store_true", help="also this tree with bot.screen_unaddressed off"
    )
    parser.add_argument("--profile-lines", type=int, default=30)
    random.seed(0)
    sys.exit(asyncio.run(main(parser.parse_args())))
