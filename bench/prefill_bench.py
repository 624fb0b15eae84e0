"""What chunked prompt evaluation costs, and what it buys (issue 14: ``prefill_chunk_tokens``).

    .venv/bin/python -m bench.prefill_bench --model /path/to/model.gguf [--rounds 5]

llama.cpp evaluates a chat's prompt in ``models.llm.prefill_chunk_tokens`` chunks with a pause
point between them, so a voice turn waiting for the model gets it within one chunk of a long
QQ prompt instead of after the whole prompt. Per chunk size (one backend each, and one with
chunking off: the whole prompt in one ``eval``, which llama.cpp splits at its own n_batch of
512), in alternating rounds, a fresh long prompt is evaluated to its first token:

- **prefill time** (to the first token) and its ratio to chunking off: the cost;
- **longest stretch without a pause point** during that prefill: how long a REALTIME job
  waits for the model at most (the benefit).

Each round's prompt starts with its own number, so only the chat template's first tokens are
reused from the previous round; the prompt cache is off.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from core.models.llamacpp.llm import LlamaCppLlm
from core.models.llm import ChatMessage, LlmSettings

OFF = 4096  # prefill_chunk_tokens at its maximum: a prompt under it is one eval
TEXT = (
    "群里今天聊了很多事情：有人问周末去哪里爬山，有人分享了做红烧肉的方法，"
    "还有人讨论新出的手机值不值得买。大家七嘴八舌，说得很热闹。"
)


def prompt(round_no: int, chars: int) -> list[ChatMessage]:
    body = f"第{round_no}轮。" + TEXT * (chars // len(TEXT) + 1)
    return [
        ChatMessage("system", "你是小优，一个群聊助手。"),
        ChatMessage("user", body[:chars] + "\n请用一句话总结。"),
    ]


def prefill_once(llm: LlamaCppLlm, messages: list[ChatMessage]) -> tuple[float, float, int]:
    """(seconds to the first token, longest gap between pause points, prompt tokens)."""
    marks: list[float] = []

    def check() -> None:
        marks.append(time.perf_counter())

    start = time.perf_counter()
    pieces = llm.stream_chat(messages, max_tokens=1, temperature=0.0, check=check)
    try:
        next(pieces, None)
    finally:
        pieces.close()
    first_s = time.perf_counter() - start
    points = [start, *marks, start + first_s]
    gap_s = max(b - a for a, b in itertools.pairwise(points))
    tokens = sum(llm.count_tokens(m.content) for m in messages)
    return first_s, gap_s, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a GGUF (e.g. the assembled Qwen 0.5B)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chars", type=int, default=1200, help="prompt length in characters")
    parser.add_argument("--chunks", default="64,128,256")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sizes = [OFF, *(int(c) for c in args.chunks.split(","))]
    backends: dict[int, LlamaCppLlm] = {}
    with tempfile.TemporaryDirectory() as cache:
        for size in sizes:
            settings = LlmSettings(
                model_path=Path(args.model),
                n_threads=args.threads,
                prompt_cache_entries=0,
                prefill_chunk_tokens=size,
            )
            backends[size] = LlamaCppLlm(settings, cache_dir=Path(cache))
            backends[size].load()
        results: dict[int, list[tuple[float, float, int]]] = {s: [] for s in sizes}
        for round_no in range(args.rounds + 1):  # round 0 warms every backend up
            for size in sizes if round_no % 2 else reversed(sizes):
                got = prefill_once(backends[size], prompt(round_no * 100 + size, args.chars))
                if round_no:
                    results[size].append(got)
        for backend in backends.values():
            backend.unload()
    off_s = statistics.median(r[0] for r in results[OFF])
    print(f"prompt ~{results[OFF][0][2]} tokens, {args.rounds} rounds, {args.threads} threads")
    print("chunk      prefill p50   ratio   longest stretch without a pause point p50 / max")
    for size in sizes:
        first = statistics.median(r[0] for r in results[size])
        gaps = [r[1] for r in results[size]]
        name = "off" if size == OFF else str(size)
        print(
            f"{name:>5}  {first * 1000:10.0f} ms  {first / off_s:5.2f}x"
            f"   {statistics.median(gaps) * 1000:8.0f} / {max(gaps) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
