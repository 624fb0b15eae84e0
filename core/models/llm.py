"""Chat language models: messages in, streamed text pieces out, stoppable between tokens.

``LlmSettings`` configures the one chat model; :func:`create_llm` is the explicit factory that
maps ``provider`` to a backend class (imported lazily, so selecting one provider never imports
another provider's native library). A backend also says how long a text is in its tokens and
how many tokens its context holds, so the facade can fit the history into the context
(:mod:`core.models.chat_context`); the defaults are a conservative estimate and the settings.

Providers: ``llamacpp`` (a local GGUF), ``openai`` (any OpenAI-compatible chat-completions
server: vLLM, llama-server, Ollama's /v1, DeepSeek, DashScope compatible mode, GLM with
``chat_path``), ``ollama`` (Ollama's native ``/api/chat``). The last two are remote backends
(:mod:`core.models.remote`): their jobs run on the event loop and hold ``remote:llm``.

Tool calls (OpenAI style): :meth:`Llm.stream_chat_events` takes :class:`ToolSpec` functions and
yields text pieces and :class:`ToolCall` requests; feed the results back as ``role="tool"``
messages with the call's ``tool_call_id``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr

from core.errors import InferenceError
from core.models.base import CancelCheck, ModelBackend

REMOTE_PROVIDERS = frozenset({"openai", "ollama"})  # providers whose jobs run on the loop
# the user message under a prompt evaluated ahead of use (llama.cpp's warm prompts, a device's
# tools): a first turn's shape, and how a warm entry of the prompt cache is recognised
WARM_USER_TEXT = "你好"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks to call ``name`` with ``arguments`` (JSON text, as the model wrote it)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function offered to the model; ``parameters`` is a JSON schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


# the GGUF chat models that ship in PyPI packages (core/models/llamacpp/embedded.py)
EmbeddedLlm = Literal["qwen2.5-coder-0.5b", "smollm2-135m"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # assistant: the calls it made
    tool_call_id: str = ""  # tool: which call this message answers


ChatEvent = str | ToolCall


class Llm(ModelBackend):
    @abstractmethod
    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        """Yield text pieces as generated; call ``check()`` before each token."""

    def stream_chat_events(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec],
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[ChatEvent]:
        """Text pieces and tool calls. Default: no tool support (text only)."""
        if tools:
            raise InferenceError(f"{type(self).__name__} does not support tool calls")
        yield from self.stream_chat(
            messages, max_tokens=max_tokens, temperature=temperature, check=check
        )

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's prompt. Default: a conservative estimate
        (half a token per UTF-8 byte: ~1.5 per hanzi, ~0.5 per ASCII letter; real
        tokenizers use fewer for both)."""
        return estimate_tokens(text)

    def context_tokens(self) -> int | None:
        """The model's context window in tokens; None: unknown (the settings' ``n_ctx``)."""
        return None


class RemoteLlm(Llm):
    """An LLM behind a network API, driven from the event loop (see core.models.remote)."""

    remote = True

    @abstractmethod
    def astream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        max_tokens: int,
        temperature: float,
    ) -> AsyncGenerator[ChatEvent, None]:
        """Text pieces and tool calls; cancelling the consumer closes the response."""

    @abstractmethod
    def blocking_stream(
        self, make: Callable[[], AsyncIterator[ChatEvent]], check: CancelCheck
    ) -> Iterator[ChatEvent]:
        """Iterate ``make()`` from a thread (core.models.remote.RemoteBackend provides it)."""

    # the blocking interface (THREAD jobs, scripts): the async stream, driven from a thread
    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        for event in self.stream_chat_events(
            messages, tools=(), max_tokens=max_tokens, temperature=temperature, check=check
        ):
            if isinstance(event, str):
                yield event

    def stream_chat_events(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec],
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[ChatEvent]:
        check()
        yield from self.blocking_stream(
            lambda: self.astream_chat(
                messages, tools=tools, max_tokens=max_tokens, temperature=temperature
            ),
            check,
        )


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate of the tokens of ``text`` (see Llm.count_tokens)."""
    return (len(text.encode("utf-8")) + 1) // 2


class LlmSettings(BaseModel):
    """The chat model. ``llamacpp`` runs a local GGUF; ``openai`` talks to any OpenAI-compatible
    chat-completions API (vLLM, Ollama's /v1, DeepSeek, DashScope, GLM); ``ollama`` uses
    Ollama's native /api/chat. ``PROVIDER_FIELDS`` says which provider reads which field."""

    PROVIDER_FIELDS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        **dict.fromkeys(
            (
                "model_path",
                "embedded",
                "n_threads",
                "n_gpu_layers",
                "seed",
                "warmup",
                "prompt_cache_entries",
                "saved_prompts",
                "prefill_chunk_tokens",
                "top_p",
                "top_k",
            ),
            ("llamacpp",),
        ),
        **dict.fromkeys(
            (
                "base_url",
                "model",
                "api_key",
                "timeout_s",
                "connect_timeout_s",
                "max_retries",
                "retry_backoff_s",
                "probe_on_load",
            ),
            ("openai", "ollama"),
        ),
        **dict.fromkeys(("chat_path", "models_path", "extra_body"), ("openai",)),
    }

    provider: Literal["llamacpp", "openai", "ollama"] = "llamacpp"
    device: str = Field("cpu", pattern=r"^(cpu|cuda:\d+)$")
    footprint_mb: int = Field(700, ge=0, description="declared memory while loaded (VRAM on cuda)")
    idle_unload_s: float | None = Field(None, gt=0, description="None: the models default")
    max_tokens: int = Field(256, ge=1, description="default reply length")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    repeat_penalty: float = Field(
        1.1,
        ge=1.0,
        le=2.0,
        description="penalty on recently generated tokens (1.0: off); small models loop without",
    )
    top_p: float = Field(
        0.8, gt=0.0, le=1.0, description="llama.cpp nucleus sampling (Qwen2.5's recommended 0.8)"
    )
    top_k: int = Field(20, ge=0, description="llama.cpp: sample among this many tokens (0: all)")
    guard_replies: bool = Field(
        True,
        description="stop a reply at a repetition loop or an echo of the system prompt, and"
        " never send the loop (core/models/chat_guard.py)",
    )
    parrot_stop_chars: int = Field(
        8,
        ge=0,
        description="a reply that opens by copying the user's message is stopped once the copy"
        " is this many characters long and generated again (0: the copy is held to its end and"
        " dropped; a 35-character statement copied back held a device's first words ~1 s)",
    )
    parrot_reply: dict[str, str] = Field(
        default_factory=lambda: {
            "zh": "抱歉，我没听明白，可以换个说法再说一遍吗？",
            "en": "Sorry, I didn't quite get that. Could you say it another way?",
        },
        description="said instead when every attempt only copied the user's message, by the"
        " message's language (zh, en; a misheard command copied back is no answer); a language"
        " left out: the copy is sent as before",
    )
    # llamacpp
    model_path: Path | None = Field(None, description="a GGUF file; None: the embedded model")
    embedded: EmbeddedLlm = Field(
        "qwen2.5-coder-0.5b",
        description="the embedded GGUF when model_path is None: qwen2.5-coder-0.5b (Chinese and"
        " English, assembled into the data dir on first use) or smollm2-135m (English only)",
    )
    n_ctx: int = Field(2048, ge=256, description="context window in tokens (openai: the server's)")
    n_threads: int = Field(2, ge=1, description="llama.cpp CPU threads (pass explicitly)")
    n_gpu_layers: int = Field(-1, description="layers offloaded when device is cuda (-1: all)")
    prompt_cache_entries: int = Field(
        16,
        ge=0,
        description="llama.cpp: finished conversations whose KV cache is kept (a few MB each), so"
        " a device's next turn is not evaluated from scratch after QQ chats used the context;"
        " 0: off",
    )
    saved_prompts: int = Field(
        8,
        ge=0,
        description="llama.cpp: primer prompts (a device's tools, the warm prompts) whose KV"
        " cache is kept on disk under the data dir (a few MB each), so after a restart a"
        " device's first command does not evaluate its tools again (8 s on 2 cores); 0: off",
    )
    warm_prompts: list[str] | None = Field(
        None,
        description="llama.cpp: system prompts evaluated at warm-up and kept in the prompt"
        " cache, so the first request under each (a device's first turn in Chinese or English)"
        " does not evaluate it; None: the device prompts of this configuration; []: none",
    )
    prefill_chunk_tokens: int = Field(
        64,
        ge=8,
        le=4096,
        description="llama.cpp: a prompt is evaluated in chunks of this many tokens with a"
        " pause point between them, so a voice turn waiting for the model gets it within one"
        " chunk of a QQ chat's prompt (its evaluated part stays in the KV cache)",
    )
    seed: int = 0
    warmup: bool = Field(
        True,
        description="llama.cpp: generate one token right after loading, so the first request"
        " does not pay for first-touch page faults and buffer set-up",
    )
    # remote: openai (OpenAI-compatible) and ollama (native /api/chat)
    base_url: str = Field(
        "http://127.0.0.1:11434",
        description="server root, e.g. Ollama http://127.0.0.1:11434, vLLM http://127.0.0.1:8000,"
        " https://api.deepseek.com, https://dashscope.aliyuncs.com, https://open.bigmodel.cn",
    )
    chat_path: str = Field(
        "/v1/chat/completions",
        description="appended to base_url; GLM: /api/paas/v4/chat/completions, DashScope:"
        " /compatible-mode/v1/chat/completions, DeepSeek: /chat/completions",
    )
    models_path: str = Field(
        "/v1/models", description="probed at load (404 is accepted: not every API lists models)"
    )
    model: str = Field("qwen2.5:7b-instruct", description="model name sent to the server")
    api_key: SecretStr | None = Field(None, description="sent as 'Authorization: Bearer'")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description='merged into each request body, e.g. {"enable_thinking": false} (DashScope)',
    )
    timeout_s: float = Field(60.0, gt=0, description="longest wait for the next streamed byte")
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="more attempts on connect errors, 429 and 5xx (before the first token only)",
    )
    retry_backoff_s: float = Field(0.5, ge=0, description="first pause between attempts; doubles")
    probe_on_load: bool = Field(True, description="GET models_path (ollama: /api/tags) at load")

    @property
    def remote(self) -> bool:
        return self.provider in REMOTE_PROVIDERS


def create_llm(settings: LlmSettings, cache_dir: Path = Path("data") / "models") -> Llm:
    """The explicit provider registry for chat models. ``cache_dir`` holds assembled embedded
    models (the manager passes ``<server.data_dir>/models``)."""
    if settings.provider == "llamacpp":
        from core.models.llamacpp.llm import LlamaCppLlm

        return LlamaCppLlm(settings, cache_dir=cache_dir)
    if settings.provider == "ollama":
        from core.models.ollama.llm import OllamaLlm

        return OllamaLlm(settings)
    from core.models.openai_compat.llm import OpenAiCompatLlm

    return OpenAiCompatLlm(settings)
