"""Benchmark of the audio backends on this CPU: VAD, ASR and TTS with the embedded models.

    .venv/bin/python -m bench.audio_models_bench [--save run.json] [--baseline old.json]

Prints one table: model load times (in this process, and cold in a fresh process with its
RSS growth including the libraries' imports), VAD cost per frame, ASR real-time factor (and
WER on the shipped English clips), TTS time to first audio and real-time factor. With
``--baseline`` a previous ``--save`` is printed beside the new figures with their ratio, so a
change is judged against a run on the same machine, not against absolute targets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import psutil

from core.models.asr import AsrSettings, create_asr
from core.models.audio import read_wav
from core.models.base import ModelBackend, never_cancelled
from core.models.tts import Tts, TtsSettings, create_tts
from core.models.vad import VadSettings, create_vad

AUDIO_DIR = Path(__file__).resolve().parents[2] / "shared" / "audio"
TTS_TEXT: dict[Literal["piper", "espeak"], str] = {
    "piper": "Hello! The weather today is sunny, with a high of twenty five degrees. "
    "I have turned on the living room lights for you.",
    "espeak": "你好！今天北京天气晴朗，最高气温二十五度。我已经帮你打开了客厅的灯。",
}
ISOLATED = ("vad/silero", "vad/webrtc", "asr/whisper-base", "tts/piper", "tts/espeak")
M = TypeVar("M", bound=ModelBackend)


def _rss_mb() -> float:
    rss_bytes: int = psutil.Process().memory_info().rss
    return rss_bytes / 1e6


def _load(name: str, model: M, rows: dict[str, float]) -> M:
    start = time.perf_counter()
    model.load()
    rows[f"{name} load s"] = time.perf_counter() - start
    return model


def _build(name: str, cache_dir: Path, threads: int) -> ModelBackend:
    kind, _, provider = name.partition("/")
    if kind == "vad":
        return create_vad(VadSettings(provider="silero" if provider == "silero" else "webrtc"))
    if kind == "asr":
        return create_asr(AsrSettings(cpu_threads=threads), cache_dir)
    tts_provider: Literal["piper", "espeak"] = "piper" if provider == "piper" else "espeak"
    return create_tts(TtsSettings(provider=tts_provider, cpu_threads=threads))


def _load_only(name: str, cache_dir: Path, threads: int) -> None:
    """Child process: load one model from cold and print its load time and RSS growth."""
    model = _build(name, cache_dir, threads)
    rss = _rss_mb()
    start = time.perf_counter()
    model.load()
    print(json.dumps({"load_s": time.perf_counter() - start, "rss_mb": _rss_mb() - rss}))


def bench_cold_loads(rows: dict[str, float], cache_dir: Path, threads: int) -> None:
    """Each model loaded in a fresh process: RSS growth includes its libraries' imports."""
    for name in ISOLATED:
        cmd = [sys.executable, "-m", "bench.audio_models_bench", "--load-only", name]
        cmd += ["--cache-dir", str(cache_dir), "--threads", str(threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        rows[f"{name} cold load s (fresh process)"] = figures["load_s"]
        rows[f"{name} RSS growth MB (fresh process)"] = figures["rss_mb"]


def _median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_vad(rows: dict[str, float], frames: int) -> None:
    speech, _ = read_wav(sorted(AUDIO_DIR.glob("en*.wav"))[0])
    for provider in ("silero", "webrtc"):
        model = _load(f"vad/{provider}", create_vad(VadSettings(provider=provider)), rows)
        vad = model.new_stream()
        n = vad.frame_samples
        chunks = [speech[i : i + n] for i in range(0, len(speech) - n + 1, n)]
        start = time.perf_counter()
        for i in range(frames):
            vad.speech_probability(chunks[i % len(chunks)])
        per_frame_us = (time.perf_counter() - start) / frames * 1e6
        rows[f"vad/{provider} us per frame"] = per_frame_us
        rows[f"vad/{provider} us per audio second"] = per_frame_us * 1000 / vad.frame_ms


def bench_asr(rows: dict[str, float], cache_dir: Path, threads: int, repeat: int) -> None:
    from tests.models_audio.wer import char_error_rate, word_error_rate  # as in the tests

    refs = json.loads((AUDIO_DIR / "refs.json").read_text(encoding="utf-8"))
    from core.models.whisper.asr import assemble_whisper_base

    start = time.perf_counter()
    assemble_whisper_base(cache_dir)
    rows["asr/whisper-base assemble s (first use)"] = time.perf_counter() - start
    for window in ("fitted", "full"):  # the default and whisper's standard 30 s window
        asr = create_asr(AsrSettings(cpu_threads=threads, encoder_window=window), cache_dir)
        if window == "fitted":
            _load("asr/whisper-base", asr, rows)
        else:
            asr.load()
        rtfs, wers, cers = [], [], []
        for wav in sorted(AUDIO_DIR.glob("*.wav")):
            language, text = refs[wav.stem.split("_")[0]]
            samples, rate = read_wav(wav)
            pcm = samples.astype(np.float32) / 32768.0
            audio_s = len(pcm) / rate
            rtfs.append(_median_s(partial(asr.transcribe, pcm), repeat) / audio_s)
            heard = asr.transcribe(pcm).text
            if language == "en":
                wers.append(word_error_rate(text, heard))
            else:
                cers.append(char_error_rate(text, heard))
        name = f"asr/whisper-base {window} window"
        rows[f"{name} real-time factor (median)"] = statistics.median(rtfs)
        rows[f"{name} WER en (mean)"] = statistics.mean(wers)
        rows[f"{name} CER zh (mean)"] = statistics.mean(cers)
        asr.unload()


def _tts_run(tts: Tts, text: str, rate_hz: int) -> tuple[float, float, float]:
    start = time.perf_counter()
    first_s = 0.0
    samples = 0
    for chunk in tts.synthesize(text, sample_rate_hz=rate_hz, check=never_cancelled):
        if samples == 0:
            first_s = time.perf_counter() - start
        samples += len(chunk.samples)
    total_s = time.perf_counter() - start
    return first_s, total_s, samples / rate_hz


def bench_tts(rows: dict[str, float], threads: int, repeat: int) -> None:
    for provider, text in TTS_TEXT.items():
        tts = create_tts(TtsSettings(provider=provider, cpu_threads=threads))
        _load(f"tts/{provider}", tts, rows)
        _tts_run(tts, "Warm up.", 24000)
        runs = [_tts_run(tts, text, 24000) for _ in range(repeat)]
        rows[f"tts/{provider} first audio s"] = statistics.median(r[0] for r in runs)
        rows[f"tts/{provider} real-time factor"] = statistics.median(r[1] / r[2] for r in runs)


def _print(rows: dict[str, float], baseline: dict[str, float]) -> None:
    width = max(len(k) for k in rows) + 2
    head = f"{'metric':<{width}}{'this run':>12}"
    if baseline:
        head += f"{'baseline':>12}{'ratio':>8}"
    print(head)
    print("-" * len(head))
    for key, value in rows.items():
        line = f"{key:<{width}}{value:>12.4g}"
        if baseline.get(key):
            line += f"{baseline[key]:>12.4g}{value / baseline[key]:>8.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="cpu threads for ASR/TTS")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--vad-frames", type=int, default=3000)
    parser.add_argument("--save", type=Path, help="write this run's figures as JSON")
    parser.add_argument("--baseline", type=Path, help="a previous --save to compare against")
    parser.add_argument("--load-only", choices=ISOLATED, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        _load_only(args.load_only, args.cache_dir, args.threads)
        return
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="xiaoyou-bench-") as cache:
        bench_vad(rows, args.vad_frames)
        bench_asr(rows, Path(cache), args.threads, args.repeat)  # assembles whisper-base first
        bench_tts(rows, args.threads, args.repeat)
        bench_cold_loads(rows, Path(cache), args.threads)
    rows["process RSS MB (all loaded)"] = _rss_mb()
    baseline = json.loads(args.baseline.read_text()) if args.baseline else {}
    _print(rows, baseline)
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
