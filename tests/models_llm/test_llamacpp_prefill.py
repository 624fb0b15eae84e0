"""A llama.cpp prompt is evaluated in chunks with pause points between them (issue 14): a chat
whose long prompt is being evaluated hands the one context to a voice turn within one chunk,
and resumes from what it had evaluated with identical output."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.models.llamacpp.llm import LlamaCppLlm
from core.models.llm import ChatMessage, LlmSettings
from tests.models_llm.llama_runs import greedy as greedy_run

pytestmark = pytest.mark.slow

CHUNK = 32
STORY = " ".join(
    f"On day {i} the little robot walked to the river, counted the stones and went home."
    for i in range(1, 13)
)
LONG = [ChatMessage("user", f"{STORY}\nHow many days did the robot walk? Answer briefly.")]
OTHER = [ChatMessage("user", "What is two plus two? Answer with a number.")]


@pytest.fixture(scope="module")
def smollm2(smollm2_available: None) -> Iterator[LlamaCppLlm]:
    settings = LlmSettings(
        n_threads=1,
        n_ctx=1024,
        embedded="smollm2-135m",
        prefill_chunk_tokens=CHUNK,
        prompt_cache_entries=0,  # every run below evaluates its prompt
    )
    llm = LlamaCppLlm(settings, cache_dir=Path("unused"))
    llm.load()
    yield llm
    llm.unload()


greedy = functools.partial(greedy_run, tokens=24)  # short replies: the prompt is the point


def test_a_long_prompt_reaches_a_pause_point_every_chunk_before_the_first_token(
    smollm2: LlamaCppLlm,
) -> None:
    prompt_tokens = smollm2.count_tokens(LONG[0].content)
    assert prompt_tokens > 6 * CHUNK
    greedy(smollm2, OTHER)  # the context holds another conversation: LONG is evaluated whole
    checks_before_first_token = 0
    first_seen = False

    def check() -> None:
        nonlocal checks_before_first_token
        if not first_seen:
            checks_before_first_token += 1

    pieces = smollm2.stream_chat(LONG, max_tokens=8, temperature=0.0, check=check)
    next(pieces)
    first_seen = True
    pieces.close()
    # old code: one check before the whole prompt was evaluated at once
    assert checks_before_first_token >= prompt_tokens // CHUNK


def test_a_generation_paused_inside_its_prompt_resumes_intact(smollm2: LlamaCppLlm) -> None:
    alone = greedy(smollm2, LONG)
    other_alone = greedy(smollm2, OTHER)
    before = smollm2.prefill_pauses
    interleaved: list[str] = []

    def check() -> None:  # what JobContext.checkpoint_blocking does when the job pauses
        if smollm2.prefill_pauses == before + 2 and not interleaved:
            saved = smollm2.save_state()
            interleaved.append(greedy(smollm2, OTHER))  # a voice turn takes the context
            smollm2.restore_state(saved)

    resumed = "".join(smollm2.stream_chat(LONG, max_tokens=24, temperature=0.0, check=check))
    assert interleaved == [other_alone]
    assert resumed == alone
