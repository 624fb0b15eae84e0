"""A conversation's next prompt continues from its cached KV cache after other conversations
used the one llama.cpp context (issue 14: a device's turn under a QQ flood re-evaluated its
whole conversation before the first reply token)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import JobCancelled
from core.models.base import never_cancelled
from core.models.llamacpp.llm import SAVED_PROMPTS_DIR, LlamaCppLlm
from core.models.llamacpp.prompt_cache import PromptCache, messages_key
from core.models.llm import WARM_USER_TEXT, ChatMessage, LlmSettings, ToolSpec

pytestmark = pytest.mark.slow

DEVICE = [
    ChatMessage("system", "You are a friendly voice assistant. Answer in one short sentence."),
    ChatMessage("user", "What is the capital of France? Tell me something about the city."),
]
QQ_CHAT = [
    ChatMessage("system", "You are a QQ group bot. Be funny and answer with a joke."),
    ChatMessage("user", "Tell me a joke about cats and dogs living together."),
]


@pytest.fixture(scope="module")
def smollm2(
    smollm2_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaCppLlm]:
    settings = LlmSettings(n_threads=1, n_ctx=1024, embedded="smollm2-135m")  # 1 thread: busy box
    llm = LlamaCppLlm(settings, cache_dir=tmp_path_factory.mktemp("data"))
    llm.load()
    yield llm
    llm.unload()


@contextlib.contextmanager
def evaluated_tokens(llm: LlamaCppLlm) -> Iterator[list[int]]:
    """Counts the tokens llama.cpp evaluates inside the block (``[n]`` once it ends)."""
    llama: Any = llm._llama
    count = [0]
    original = llama.eval

    def counting(batch: Any) -> None:
        count[0] += len(batch)
        original(batch)

    llama.eval = counting
    try:
        yield count
    finally:
        del llama.eval


def run(llm: LlamaCppLlm, messages: list[ChatMessage], tokens: int = 12) -> tuple[str, int]:
    """The greedy reply and how many tokens llama.cpp evaluated for it."""
    with evaluated_tokens(llm) as count:
        text = "".join(
            llm.stream_chat(messages, max_tokens=tokens, temperature=0.0, check=never_cancelled)
        )
    return text, count[0]


def second_turn(llm: LlamaCppLlm) -> tuple[str, int]:
    """Device turn 1, a QQ chat on the same context, then device turn 2."""
    first, _ = run(llm, DEVICE)
    run(llm, QQ_CHAT)
    follow_up = [*DEVICE, ChatMessage("assistant", first), ChatMessage("user", "And of Spain?")]
    return run(llm, follow_up)


def test_the_next_turn_continues_from_the_cached_conversation(smollm2: LlamaCppLlm) -> None:
    smollm2.prompt_cache = PromptCache(0)  # what the old code did: no cache
    uncached_text, uncached_tokens = second_turn(smollm2)
    smollm2.prompt_cache = PromptCache(8)
    cached_text, cached_tokens = second_turn(smollm2)
    assert cached_text == uncached_text  # the same greedy reply
    assert smollm2.prompt_cache.hits == 1
    # only the new user message (and the reply) are evaluated, not the whole conversation
    assert cached_tokens < uncached_tokens / 2, (cached_tokens, uncached_tokens)


def test_a_guard_closing_the_reply_early_still_keeps_the_conversation(
    smollm2: LlamaCppLlm,
) -> None:
    smollm2.prompt_cache = PromptCache(8)
    pieces = smollm2.stream_chat(DEVICE, max_tokens=24, temperature=0.0, check=never_cancelled)
    got = [next(pieces), next(pieces)]
    pieces.close()  # what the reply guard does at max_sentences
    assert smollm2.prompt_cache.best(messages_key(DEVICE, "".join(got))) is not None
    assert len(smollm2.prompt_cache) == 1


def test_a_flood_of_one_off_chats_does_not_evict_a_continuing_conversation() -> None:
    cache: PromptCache[str] = PromptCache(4)
    device = messages_key(DEVICE, "Paris.")
    cache.put(device, "turn1")
    hit = cache.best(messages_key([*DEVICE, ChatMessage("assistant", "Paris."), DEVICE[1]]))
    assert hit is not None and hit.state == "turn1"
    cache.used(hit)
    for group in range(50):
        cache.put(messages_key([QQ_CHAT[0], ChatMessage("user", f"chat {group}")], "ha"), "qq")
    assert cache.best(device) is not None and cache.best(device).state == "turn1"  # type: ignore[union-attr]
    longer = messages_key([*DEVICE, ChatMessage("assistant", "Paris."), DEVICE[1]], "Madrid.")
    cache.put(longer, "turn2")  # the conversation continued: it replaces its shorter entry
    assert len(cache) == 4
    assert cache.best(longer).state == "turn2"  # type: ignore[union-attr]


def test_forget_drops_only_the_entries_it_is_told_to() -> None:
    cache: PromptCache[str] = PromptCache(8)
    cache.put(messages_key([QQ_CHAT[0], ChatMessage("user", "你好")], "嗨"), "warm")
    cache.put(messages_key(DEVICE, "Paris."), "device")
    hit = cache.best(messages_key(DEVICE))
    assert hit is not None
    cache.used(hit)  # protected entries are dropped too
    dropped = cache.forget(lambda key: key[1] == ("user", "你好"))
    assert dropped == 1 and len(cache) == 1
    assert cache.best(messages_key(DEVICE)) is None


def test_a_warm_prompt_is_not_evaluated_again_after_other_chats(
    smollm2_available: None, tmp_path: Path
) -> None:
    # a device's first turn after start-up (or after QQ chats used the context) started by
    # evaluating its whole system prompt: ~1 s of the first voice turn with the 0.5B default
    def system_tokens_evaluated(warm_prompts: list[str]) -> int:
        settings = LlmSettings(
            n_threads=1, n_ctx=1024, embedded="smollm2-135m", warm_prompts=warm_prompts
        )
        llm = LlamaCppLlm(settings, cache_dir=tmp_path / str(len(warm_prompts)))
        llm.load()
        try:
            run(llm, QQ_CHAT)  # the context now holds another system prompt
            _, evaluated = run(llm, DEVICE, tokens=1)
        finally:
            llm.unload()
        return evaluated

    cold = system_tokens_evaluated([])
    warm = system_tokens_evaluated([DEVICE[0].content])
    assert warm < cold - 10, (warm, cold)  # the system prompt (~15 tokens) was not evaluated


def test_device_prompts_are_the_default_warm_prompts() -> None:
    from core.settings import build_settings

    settings = build_settings()
    prompts = settings.models.llm.warm_prompts
    assert prompts == [settings.devices.system_prompt, settings.devices.system_prompts["en"]]
    assert build_settings(models={"llm": {"warm_prompts": []}}).models.llm.warm_prompts == []


def test_a_question_cancelled_at_its_first_piece_leaves_its_words_for_the_whole_question(
    smollm2: LlamaCppLlm,
) -> None:
    """A device's speculation demoted when the user speaks on (devices/pipeline.py) is cancelled
    at its LLM's first piece: the words said before the pause stay in the context, and the
    whole question evaluates only what came after them."""
    partial = [DEVICE[0], ChatMessage("user", "What is the capital of France?")]
    other = [DEVICE[0], ChatMessage("user", "Please turn on the light in the kitchen.")]
    whole = DEVICE  # the partial's words, then "Tell me something about the city."

    def evaluated_after(first: list[ChatMessage]) -> int:
        smollm2.prompt_cache = PromptCache(8)  # nothing of ``whole`` is cached
        run(smollm2, QQ_CHAT)  # another conversation used the context
        cancelled = False

        def check() -> None:
            if cancelled:
                raise JobCancelled("speech resumed")

        pieces = smollm2.stream_chat(first, max_tokens=12, temperature=0.0, check=check)
        next(pieces)
        cancelled = True
        with pytest.raises(JobCancelled):
            next(pieces)
        return run(smollm2, whole)[1]

    shares_system = evaluated_after(other)  # the system prompt is reused either way
    shares_words = evaluated_after(partial)
    partial_tokens = smollm2.count_tokens(partial[1].content)
    assert shares_words <= shares_system - partial_tokens + 2, (
        shares_words,
        shares_system,
        partial_tokens,
    )


LAMP = ToolSpec("self.lamp.turn_on", "Turn on the lamp of the device in the living room.")
VOLUME = ToolSpec(
    "self.audio_speaker.set_volume",
    "Set the volume of the audio speaker.",
    {"type": "object", "properties": {"volume": {"type": "integer"}}, "required": ["volume"]},
)


def tool_run(llm: LlamaCppLlm, messages: list[ChatMessage]) -> int:
    """How many tokens llama.cpp evaluated for a tool chat of one token."""
    with evaluated_tokens(llm) as count:
        events = llm.stream_chat_events(
            messages, tools=[LAMP, VOLUME], max_tokens=1, temperature=0.0, check=never_cancelled
        )
        list(events)
    return count[0]


def test_a_tool_chat_after_other_chats_starts_from_its_cached_tools_prompt(
    smollm2: LlamaCppLlm,
) -> None:
    """Trial (firmware emulator, 7 tools): the tools' prompt is 609 tokens, and every tool chat
    after another chat used the context evaluated all of it again (7 s of the first audio)."""

    def command_after_a_chat() -> int:
        tool_run(smollm2, [DEVICE[0], ChatMessage("user", "你好")])  # the device's warm-up
        run(smollm2, QQ_CHAT)
        return tool_run(smollm2, [DEVICE[0], ChatMessage("user", "Turn on the lamp, please.")])

    smollm2.prompt_cache = PromptCache(0)  # as before: tool chats were never cached
    uncached = command_after_a_chat()
    smollm2.prompt_cache = PromptCache(8)
    cached = command_after_a_chat()
    assert smollm2.prompt_cache.hits == 1
    assert cached < uncached / 3, (cached, uncached)  # the user message, not the tools again


def test_a_tool_chat_never_continues_a_plain_chat_of_the_same_messages(
    smollm2: LlamaCppLlm,
) -> None:
    smollm2.prompt_cache = PromptCache(8)
    run(smollm2, DEVICE, tokens=1)  # plain: no tools in its prompt
    run(smollm2, QQ_CHAT, tokens=1)
    hits = smollm2.prompt_cache.hits
    tool_run(smollm2, DEVICE)  # the same messages with tools: another prompt
    assert smollm2.prompt_cache.hits == hits


def test_a_devices_tools_prompt_is_not_evaluated_again_after_a_restart(
    smollm2_available: None, tmp_path: Path
) -> None:
    """Firmware emulator after a restart (2026-12-02): the user spoke right after the wake word,
    before the device's tools' warm-up could run, and "屏幕弄得一点" waited 8.59 s for its
    first token (the 609-token tools prompt). The warm-up's primer is now kept on disk."""
    settings = LlmSettings(n_threads=1, n_ctx=1024, embedded="smollm2-135m", warm_prompts=[])
    primer = [DEVICE[0], ChatMessage("user", WARM_USER_TEXT)]
    command = [DEVICE[0], ChatMessage("user", "Turn on the lamp, please.")]

    def first_command_after_start(warm_up_first: bool) -> int:
        llm = LlamaCppLlm(settings, cache_dir=tmp_path)
        llm.load()
        try:
            if warm_up_first:
                tool_run(llm, primer)  # the device's warm-up before the restart
            return tool_run(llm, command)
        finally:
            llm.unload()

    fresh = first_command_after_start(False)  # nothing saved yet: the whole tools prompt
    assert not list((tmp_path / SAVED_PROMPTS_DIR).glob("*.kv"))  # a command is not a primer
    first_command_after_start(True)
    first_command_after_start(True)  # primed again after a restart: still one file
    assert len(list((tmp_path / SAVED_PROMPTS_DIR).glob("*.kv"))) == 1
    restarted = first_command_after_start(False)
    assert restarted < fresh / 3, (restarted, fresh)  # the user message, not the tools again


def test_a_saved_primer_of_another_model_or_a_broken_file_is_not_used(
    smollm2_available: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = LlmSettings(n_threads=1, n_ctx=1024, embedded="smollm2-135m", warm_prompts=[])
    primer = [DEVICE[0], ChatMessage("user", WARM_USER_TEXT)]
    llm = LlamaCppLlm(settings, cache_dir=tmp_path)
    llm.load()
    tool_run(llm, primer)
    llm.unload()
    (saved,) = (tmp_path / SAVED_PROMPTS_DIR).glob("*.kv")
    saved.write_bytes(saved.read_bytes()[:-1000])  # cut short: the KV state is invalid
    other = LlmSettings(n_threads=1, n_ctx=512, embedded="smollm2-135m", warm_prompts=[])
    for each in (other, settings):  # another context size: not read; the broken one: dropped
        llm = LlamaCppLlm(each, cache_dir=tmp_path)
        llm.load()
        try:
            tool_run(llm, [DEVICE[0], ChatMessage("user", "Turn on the lamp, please.")])
            reply = "".join(
                llm.stream_chat(DEVICE, max_tokens=4, temperature=0.0, check=never_cancelled)
            )
            assert reply.strip()  # the model still answers
        finally:
            llm.unload()
    assert caplog.text.count("cached prompt dropped") == 1  # only the same model read it


def test_a_user_saying_the_warm_prompt_is_answered_from_its_own_logits(
    smollm2_available: None, tmp_path: Path
) -> None:
    # a user saying "你好" asks the warm prompt's own question: its cached sequence ends at the
    # prompt, and llama.cpp sampled the reply from the logits the context held last (another
    # chat's). Firmware emulator: "你好" → stt sent, an empty reply, the device stayed silent
    system = DEVICE[0].content
    primer = [ChatMessage("system", system), ChatMessage("user", WARM_USER_TEXT)]

    def reply(warm_prompts: list[str]) -> str:
        settings = LlmSettings(
            n_threads=1, n_ctx=1024, embedded="smollm2-135m", warm_prompts=warm_prompts
        )
        llm = LlamaCppLlm(settings, cache_dir=tmp_path / str(len(warm_prompts)))
        llm.load()
        try:
            run(llm, QQ_CHAT)  # the context's logits are now this chat's
            text, _ = run(llm, primer)
        finally:
            llm.unload()
        return text

    fresh = reply([])
    assert fresh
    assert reply([system]) == fresh
