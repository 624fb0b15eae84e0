"""Chat quality of the embedded LLMs on everyday group-chat questions, side by side in one run.

    .venv/bin/python -m bench.chat_quality_bench [--models qwen2.5-coder-0.5b,smollm2-135m]
        (a model may be NAME=PATH: that GGUF with NAME's template and settings)
        [--prompts main|heldout|all] [--rounds N] [--limit N] [--no-hint] [--show]
        [--save run.json]

Each prompt of ``bench/data/chat_prompts.json`` (Chinese and English) and of the held-out set
``chat_prompts_heldout.json`` (never used to tune the persona, hints or sampling; reported
separately) goes through the real Inference facade (scheduler job, context fitting, reply guard)
with the QQ plugin's message building (``bot.chat_text.chat_messages``: the persona in the
message's language, the bare text plus the reply-language hint), reply bounds and temperature,
as a fresh conversation; ``--rounds`` asks every prompt that many times (the sampler differs).
A reply is *clean* when it is non-empty, in the prompt's language, has no degenerate
repetition left in it, does not echo the system prompt and is not merely the question
(checked on the text that was sent, independently of the guard). The echo check looks for 12
persona characters in a row outside the persona's first clause (who it is: "我是小优，一个友好、
乐于助人的 QQ 群聊助手" is the right answer to "你是谁？"); "strict" also counts that clause (the
first session's criterion). Per model and prompt set: the clean share, the share in the right
language, how often the guard ended a reply (and why), first-piece and whole-reply p50/p90.
The last table gives the first model's figures relative to the others'.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.chat_text import (
    DEFAULT_PERSONA,
    DEFAULT_PERSONAS,
    LANGUAGE_HINTS,
    chat_messages,
    language_of,
    strip_speaker_prefix,
)
from core.models.chat_guard import _normalize
from core.models.inference import Inference
from core.models.llm import LlmSettings
from core.models.manager import ModelManager
from core.models.settings import ModelsSettings
from core.scheduler import Lane, Scheduler, SchedulerSettings

DATA = Path(__file__).resolve().parent / "data"
PROMPT_SETS = {"main": DATA / "chat_prompts.json", "heldout": DATA / "chat_prompts_heldout.json"}
QQ_MAX_TOKENS = 256  # bot.plugins.chat ChatConfig defaults
QQ_MAX_SENTENCES = 5
QQ_TEMPERATURE = 0.7
ECHO_CHARS = 12  # stricter than the guard: 12 normalized persona characters in a row
LOOP_COMPRESSION = 2.4  # whisper's threshold for repetitive text


@dataclass
class Reply:
    model: str
    prompt_set: str
    lang: str
    prompt: str
    text: str
    first_s: float
    total_s: float
    right_language: bool
    degenerate: bool
    echo: bool
    strict_echo: bool  # the persona's identity clause counts too
    parrot: bool  # the reply only repeats the question
    guard: str | None

    @property
    def clean(self) -> bool:
        return (
            bool(self.text)
            and self.right_language
            and not (self.degenerate or self.echo or self.parrot)
        )


class GuardLog(logging.Handler):
    """Collects the facade's "reply ended by the guard: <reason>" debug records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("reply ended by the guard: "):
            self.reasons.append(message.rsplit(": ", 1)[1])


def degenerate(text: str) -> bool:
    sentences = [
        _normalize(s) for s in text.replace("！", "。").replace("？", "。").split("。") if s
    ]
    keyed = [s for s in sentences if len(s) > 1]
    if len(keyed) != len(set(keyed)):
        return True
    if (
        len(text) >= 60
        and len(text.encode()) / len(zlib.compress(text.encode())) > LOOP_COMPRESSION
    ):
        return True
    return any(text.count(text[i : i + 8]) >= 3 for i in range(0, max(0, len(text) - 8)))


def echoes(text: str, prompts: list[str]) -> bool:
    norm = _normalize(text)
    windows = [norm[i : i + ECHO_CHARS] for i in range(len(norm) - ECHO_CHARS + 1)]
    return any(w in _normalize(p) for p in prompts for w in windows)


def instructions(persona: str) -> str:
    """The persona without its first clause (who it is): what a reply must not recite."""
    for end in ("。", ". ", "，", ", "):
        if end in persona:
            return persona.split(end, 1)[1]
    return persona


ALL_PERSONAS = [DEFAULT_PERSONA, *DEFAULT_PERSONAS.values()]
HINTS = [*LANGUAGE_HINTS.values(), "（请用简体中文回答）"]  # (the first session's zh hint)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_model(
    name: str,
    prompts: list[dict[str, str]],
    rounds: int,
    cache_dir: Path,
    *,
    hint: bool,
    temperature: float,
    log: GuardLog,
) -> tuple[list[Reply], float]:
    embedded, _, path = name.partition("=")  # "qwen2.5-coder-0.5b=/x.gguf": another file
    llm = LlmSettings(
        embedded=embedded,  # type: ignore[arg-type]
        n_threads=2,
        model_path=Path(path) if path else None,
    )
    settings = ModelsSettings(llm=llm)
    scheduler = Scheduler(SchedulerSettings(resources={"cpu": 2}, prewarm=False))
    await scheduler.start()
    manager = ModelManager(settings, scheduler, cache_dir)
    inference = Inference(scheduler, manager, settings)
    started = time.perf_counter()
    await manager.load("llm")
    load_s = time.perf_counter() - started
    replies: list[Reply] = []
    try:
        for item in [p for _ in range(rounds) for p in prompts]:
            # the plugin's default: no speaker prefix, the persona in the message's language
            messages = chat_messages(DEFAULT_PERSONA, [], item["text"], hints=None if hint else {})
            content = messages[-1].content
            before = len(log.reasons)
            t0 = time.perf_counter()
            first: float | None = None
            pieces: list[str] = []
            handle = inference.chat(
                messages,
                lane=Lane.INTERACTIVE,
                owner="bench",
                max_tokens=QQ_MAX_TOKENS,
                temperature=temperature,
                max_sentences=QQ_MAX_SENTENCES,
            )
            async for piece in handle.stream():
                if first is None:
                    first = time.perf_counter() - t0
                pieces.append(piece)
            total = time.perf_counter() - t0
            text = strip_speaker_prefix("".join(pieces).strip(), [item["speaker"], "小优"])
            replies.append(
                Reply(
                    model=name,
                    prompt_set=item["set"],
                    lang=item["lang"],
                    prompt=item["text"],
                    text=text,
                    first_s=first if first is not None else total,
                    total_s=total,
                    right_language=language_of(text) == item["lang"],
                    degenerate=degenerate(text),
                    echo=echoes(text, [instructions(p) for p in ALL_PERSONAS] + HINTS),
                    strict_echo=echoes(text, ALL_PERSONAS + HINTS),
                    parrot=_normalize(text) in (_normalize(item["text"]), _normalize(content)),
                    guard=log.reasons[before] if len(log.reasons) > before else None,
                )
            )
    finally:
        await scheduler.stop()
        await manager.close()
    return replies, load_s


def summary(replies: list[Reply], load_s: float) -> dict[str, Any]:
    n = len(replies)
    stops: dict[str, int] = {}
    for r in replies:
        if r.guard and r.guard != "max sentences":
            stops[r.guard] = stops.get(r.guard, 0) + 1
    return {
        "load_s": load_s,
        "n": n,
        "clean": sum(r.clean for r in replies) / n,
        "clean_strict": sum(r.clean and not r.strict_echo for r in replies) / n,
        "clean_zh": _share([r for r in replies if r.lang == "zh"]),
        "clean_en": _share([r for r in replies if r.lang == "en"]),
        "right_language": sum(r.right_language for r in replies) / n,
        "degenerate": sum(r.degenerate for r in replies) / n,
        "echo": sum(r.echo for r in replies) / n,
        "parrot": sum(r.parrot for r in replies) / n,
        "guard_stops": stops,
        "first_p50_s": statistics.median(r.first_s for r in replies),
        "first_p90_s": pct([r.first_s for r in replies], 0.9),
        "total_p50_s": statistics.median(r.total_s for r in replies),
        "total_p90_s": pct([r.total_s for r in replies], 0.9),
        "chars_p50": statistics.median(len(r.text) for r in replies),
    }


def _share(replies: list[Reply]) -> float:
    return sum(r.clean for r in replies) / len(replies) if replies else float("nan")


def print_tables(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    rows = [
        ("replies", "n", "{}"),
        ("clean, right language", "clean", "{:.0%}"),
        ("  same, strict echo check", "clean_strict", "{:.0%}"),
        ("  of Chinese prompts", "clean_zh", "{:.0%}"),
        ("  of English prompts", "clean_en", "{:.0%}"),
        ("right language", "right_language", "{:.0%}"),
        ("degenerate left in reply", "degenerate", "{:.0%}"),
        ("system prompt echoed", "echo", "{:.0%}"),
        ("only repeats the question", "parrot", "{:.0%}"),
        ("first piece p50 (s)", "first_p50_s", "{:.2f}"),
        ("first piece p90 (s)", "first_p90_s", "{:.2f}"),
        ("whole reply p50 (s)", "total_p50_s", "{:.2f}"),
        ("whole reply p90 (s)", "total_p90_s", "{:.2f}"),
        ("reply length p50 (chars)", "chars_p50", "{:.0f}"),
        ("load (s)", "load_s", "{:.2f}"),
    ]
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, key, fmt in rows:
        print(f"| {label} | " + " | ".join(fmt.format(results[n][key]) for n in names) + " |")
    print(
        "| guard ended a reply (why) | "
        + " | ".join(
            ", ".join(f"{k} {v}" for k, v in results[n]["guard_stops"].items()) or "—"
            for n in names
        )
        + " |"
    )
    if len(names) > 1:
        base = names[0]
        b = results[base]
        for other in names[1:]:
            o = results[other]
            print(
                f"\n{base} / {other}: clean {b['clean'] / max(o['clean'], 1e-9):.2f}x,"
                f" whole reply p50 {b['total_p50_s'] / o['total_p50_s']:.2f}x,"
                f" first piece p50 {b['first_p50_s'] / o['first_p50_s']:.2f}x"
            )


def load_prompts(which: str, limit: int) -> list[dict[str, str]]:
    names = list(PROMPT_SETS) if which == "all" else [which]
    prompts: list[dict[str, str]] = []
    for name in names:
        items = json.loads(PROMPT_SETS[name].read_text(encoding="utf-8"))["prompts"]
        if limit:
            items = [
                p for lang in ("zh", "en") for p in [q for q in items if q["lang"] == lang][:limit]
            ]
        prompts.extend({**p, "set": name} for p in items)
    return prompts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qwen2.5-coder-0.5b,smollm2-135m")
    parser.add_argument("--prompts", choices=["main", "heldout", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=1, help="times each prompt is asked")
    parser.add_argument("--limit", type=int, default=0, help="first N prompts of each language")
    parser.add_argument("--no-hint", action="store_true", help="no reply-language hint")
    parser.add_argument("--show", action="store_true", help="print every reply")
    parser.add_argument("--temperature", type=float, default=QQ_TEMPERATURE)
    parser.add_argument("--cache-dir", type=Path, default=None, help="assembled models")
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args()
    prompts = load_prompts(args.prompts, args.limit)
    log = GuardLog()
    facade_log = logging.getLogger("core.models.inference")
    facade_log.setLevel(logging.DEBUG)
    facade_log.addHandler(log)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    every: list[Reply] = []
    print(f"cpus {os.cpu_count()}, load average at start {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        cache = args.cache_dir or Path(tmp)
        for name in args.models.split(","):
            replies, load_s = await run_model(
                name,
                prompts,
                args.rounds,
                cache,
                hint=not args.no_hint,
                temperature=args.temperature,
                log=log,
            )
            sets = sorted({r.prompt_set for r in replies}, key=list(PROMPT_SETS).index)
            for prompt_set in [*sets, "all"] if len(sets) > 1 else sets:
                chosen = [r for r in replies if prompt_set in ("all", r.prompt_set)]
                results.setdefault(prompt_set, {})[name] = summary(chosen, load_s)
            every.extend(replies)
            if args.show:
                for r in replies:
                    flag = "ok " if r.clean else "BAD"
                    print(
                        f"{flag} {name} {r.prompt_set} {r.total_s:5.2f}s [{r.prompt}] -> "
                        f"{r.text!r}" + (f" (guard: {r.guard})" if r.guard else ""),
                        flush=True,
                    )
    print(
        f"\n{len(prompts)} prompts ({sum(p['lang'] == 'zh' for p in prompts)} zh) x "
        f"{args.rounds} rounds, hint={'off' if args.no_hint else 'on'}; load average at the end "
        f"{os.getloadavg()} (2 cores shared with other work)\n"
    )
    for prompt_set, table in results.items():
        print(f"\n### prompt set: {prompt_set}\n")
        print_tables(table)
    if args.save:
        args.save.write_text(
            json.dumps(
                {"summary": results, "replies": [asdict(r) for r in every]},
                ensure_ascii=False,
                indent=1,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    asyncio.run(main())
