"""A paused llama.cpp generation hands the one context to another job and resumes intact
(issue 14: the scheduler's 'model:llm' slot replaces the lock polled inside the job)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.models.llamacpp.llm import LlamaCppLlm
from core.models.llm import ChatMessage, LlmSettings
from tests.models_llm.llama_runs import greedy

pytestmark = pytest.mark.slow

FIRST = [ChatMessage("user", "Name three colours of the rainbow, one per line.")]
SECOND = [ChatMessage("user", "What is two plus two? Answer with a number.")]


@pytest.fixture(scope="module")
def smollm2(
    smollm2_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaCppLlm]:
    settings = LlmSettings(n_threads=1, n_ctx=1024, embedded="smollm2-135m")  # 1 thread: busy box
    llm = LlamaCppLlm(settings, cache_dir=tmp_path_factory.mktemp("data"))
    llm.load()
    yield llm
    llm.unload()


def test_a_paused_generation_resumes_intact_after_another_used_the_context(
    smollm2: LlamaCppLlm,
) -> None:
    alone = greedy(smollm2, FIRST)
    second_alone = greedy(smollm2, SECOND)
    steps = 0
    interleaved: list[str] = []

    def check() -> None:  # what JobContext.checkpoint_blocking does when the job pauses
        nonlocal steps
        steps += 1
        if steps == 6:
            saved = smollm2.save_state()
            interleaved.append(greedy(smollm2, SECOND))  # a REALTIME job takes the context
            smollm2.restore_state(saved)

    first = "".join(smollm2.stream_chat(FIRST, max_tokens=32, temperature=0.0, check=check))
    assert steps > 6
    assert interleaved == [second_alone]
    assert first == alone


def test_without_the_hand_over_the_paused_generation_is_corrupted(smollm2: LlamaCppLlm) -> None:
    """Why the hand-over exists: the other job's prompt overwrites the KV cache."""
    alone = greedy(smollm2, FIRST)
    steps = 0

    def check() -> None:
        nonlocal steps
        steps += 1
        if steps == 6:
            greedy(smollm2, SECOND)

    first = "".join(smollm2.stream_chat(FIRST, max_tokens=32, temperature=0.0, check=check))
    assert first != alone
