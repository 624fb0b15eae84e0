"""LLM / VL / SD benchmarks: each model called directly and through the Inference facade
(scheduler job + manager) in the same run, so the facade's overhead shows as a ratio.

    .venv/bin/python -m bench.llm_models_bench [--runs 3] [--tokens 64] [--sd-steps 8]

1. SmolLM2-135M (llama.cpp, embedded GGUF): time to first token, tokens/s (the Qwen default
   against SmolLM2 on chat quality: bench/chat_quality_bench.py)
2. tiny random Qwen2-VL: time per generated token
3. tiny random SD 1.5 pipeline: time per denoising step at 64x64
4. load time and memory (process RSS delta) of each model

VL and SD use tiny random-weight models (no weights ship on PyPI); their figures measure the
code path and per-step overhead, not real model speed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
from PIL import Image

from core.models.base import ModelBackend, never_cancelled
from core.models.inference import Inference
from core.models.llm import ChatMessage, Llm, LlmSettings, create_llm
from core.models.manager import ModelManager
from core.models.sd import DrawRequest, ImageGenerator, SdSettings, create_sd
from core.models.settings import ModelsSettings
from core.models.vl import VisionLanguage, VlSettings, create_vl
from core.scheduler import Lane, Scheduler, SchedulerSettings
from tests.models_llm.tiny_models import build_tiny_qwen2vl, build_tiny_sd

TOPICS = (
    "the sea",
    "a mountain",
    "the moon",
    "a forest",
    "a river",
    "the desert",
    "snow",
    "a city",
)


def question(run: int) -> list[ChatMessage]:
    """A different question per run: llama.cpp reuses a cached prompt prefix, so repeating one
    prompt would measure the cache, not prompt processing (the shared system-prompt prefix is
    realistic and stays)."""
    return [ChatMessage("user", f"Write two sentences about {TOPICS[run % len(TOPICS)]}.")]


Row = tuple[str, str, str, str]


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def timed_load(make: Callable[[], ModelBackend]) -> tuple[ModelBackend, float, float]:
    backend = make()
    before, started = rss_mb(), time.perf_counter()
    backend.load()
    return backend, time.perf_counter() - started, rss_mb() - before


def stamp(stamps: list[float]) -> None:
    stamps.append(time.perf_counter())


def png_bytes(size_px: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size_px, size_px), (120, 40, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def llm_direct(llm: Llm, max_tokens: int, run: int) -> tuple[float, float]:
    """(time to first token s, tokens/s after the first)."""
    started = time.perf_counter()
    stamps = [
        time.perf_counter()
        for _ in llm.stream_chat(
            question(run), max_tokens=max_tokens, temperature=0.0, check=never_cancelled
        )
    ]
    return stamps[0] - started, (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)


async def llm_facade(inference: Inference, max_tokens: int, run: int) -> tuple[float, float]:
    started = time.perf_counter()
    handle = inference.chat(
        question(run), lane=Lane.INTERACTIVE, owner="bench", max_tokens=max_tokens
    )
    stamps = [time.perf_counter() async for _ in handle.stream()]
    return stamps[0] - started, (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)


def median_pair(samples: Sequence[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def fmt_ratio(facade: float, direct: float) -> str:
    return f"{facade / direct:.2f}x" if direct > 0 else "-"


async def main(runs: int, tokens: int, sd_steps: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="llm-bench-") as tmp:
        vl_dir = build_tiny_qwen2vl(Path(tmp) / "vl")
        sd_dir = build_tiny_sd(Path(tmp) / "sd")
        settings = ModelsSettings(
            llm=LlmSettings(n_threads=2, n_ctx=1024, temperature=0.0, embedded="smollm2-135m"),
            vl=VlSettings(model_dir=vl_dir, max_tokens=tokens),
            sd=SdSettings(model_dir=sd_dir),
        )
        loaded: dict[str, ModelBackend] = {}
        for name, make in (
            ("llm", lambda: create_llm(settings.llm, Path(tmp))),
            ("vl", lambda: create_vl(settings.vl)),
            ("sd", lambda: create_sd(settings.sd)),
        ):
            backend, load_s, mem_mb = timed_load(make)
            loaded[name] = backend
            rows.append(
                (f"{name}: load s | RSS delta (direct)", f"{load_s:.2f} s", f"{mem_mb:.0f} MB", "")
            )
        llm, vl, sd = loaded["llm"], loaded["vl"], loaded["sd"]
        assert (
            isinstance(llm, Llm)
            and isinstance(vl, VisionLanguage)
            and isinstance(sd, ImageGenerator)
        )
        scheduler = Scheduler(SchedulerSettings(resources={"cpu": 2}))
        await scheduler.start()
        manager = ModelManager(settings, scheduler, Path(tmp) / "cache")
        inference = Inference(scheduler, manager, settings)
        for name in ("llm", "vl", "sd"):
            await manager.load(name)
        for row in manager.snapshot():
            if row["loaded"]:
                rows.append(
                    (
                        f"{row['name']}: load s | measured MB (manager)",
                        f"{row['load_s']} s",
                        f"{row['measured_mb']} MB",
                        "",
                    )
                )
        # direct and facade runs alternate so machine noise hits both sides alike
        llm_direct(llm, 4, 0)  # warm-up
        await llm_facade(inference, 4, 0)
        llm_d, llm_f = [], []
        for run in range(1, runs + 1):
            llm_d.append(llm_direct(llm, tokens, 2 * run))
            llm_f.append(await llm_facade(inference, tokens, 2 * run + 1))
        direct, facade = median_pair(llm_d), median_pair(llm_f)
        rows.append(
            (
                "llm: time to first token",
                f"{direct[0] * 1000:.0f} ms",
                f"{facade[0] * 1000:.0f} ms",
                fmt_ratio(facade[0], direct[0]),
            )
        )
        rows.append(
            (
                "llm: tokens/s",
                f"{direct[1]:.1f}",
                f"{facade[1]:.1f}",
                fmt_ratio(facade[1], direct[1]),
            )
        )

        image = png_bytes(56)
        vl_d, vl_f = [], []
        for _ in range(runs):
            started = time.perf_counter()
            vl.answer(image, "What is this?", max_tokens=tokens, check=never_cancelled)
            vl_d.append(time.perf_counter() - started)
            started = time.perf_counter()
            await inference.see(image, "What is this?", owner="bench")
            vl_f.append(time.perf_counter() - started)
        vd, vf = statistics.median(vl_d), statistics.median(vl_f)
        rows.append(
            (
                f"vl (tiny): ms per answer (<= {tokens} tokens)",
                f"{vd * 1000:.1f}",
                f"{vf * 1000:.1f}",
                fmt_ratio(vf, vd),
            )
        )

        request = DrawRequest("a purple sea", width=64, height=64, steps=sd_steps, seed=1)
        sd_d, sd_f, sd_steps_only = [], [], []
        for _ in range(runs):
            stamps: list[float] = []
            started = time.perf_counter()
            sd.generate(request, check=functools.partial(stamp, stamps))
            sd_d.append((time.perf_counter() - started) / sd_steps)
            sd_steps_only.append(
                statistics.median(b - a for a, b in itertools.pairwise(stamps[1:]))
            )
            started = time.perf_counter()
            await inference.draw(request, owner="bench").result()
            sd_f.append((time.perf_counter() - started) / sd_steps)
        d, f = statistics.median(sd_d), statistics.median(sd_f)
        rows.append(
            (
                "sd (tiny, 64x64): ms per step, whole call",
                f"{d * 1000:.1f}",
                f"{f * 1000:.1f}",
                fmt_ratio(f, d),
            )
        )
        rows.append(
            (
                "sd (tiny, 64x64): ms per step, callbacks",
                f"{statistics.median(sd_steps_only) * 1000:.1f}",
                "",
                "",
            )
        )
        await manager.close()
        await scheduler.stop()
        for backend in loaded.values():
            backend.unload()
    return rows


def print_table(rows: list[Row]) -> None:
    header = ("measure", "direct", "via Inference facade", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--sd-steps", type=int, default=8)
    args = parser.parse_args()
    print_table(asyncio.run(main(args.runs, args.tokens, args.sd_steps)))
