"""Chat language models: messages in, streamed text pieces out, stoppable between tokens.

``LlmSettings`` configures the one chat model; :func:`create_llm` is the explicit factory that
maps ``provider`` to a backend class (imported lazily, so selecting one provider never imports
another provider's native library).

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
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr

from core.errors import InferenceError
from core.models.base import CancelCheck, ModelBackend

REMOTE_PROVIDERS = frozenset({"openai", "ollama"})  # providers whose jobs run on the loop


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


class LlmSettings(BaseModel):
    """The chat model. ``llamacpp`` runs a local GGUF; ``openai`` talks to any OpenAI-compatible
    chat-completions API (vLLM, Ollama's /v1, DeepSeek, DashScope, GLM); ``ollama`` uses
    Ollama's native /api/chat. ``PROVIDER_FIELDS`` says which provider reads which field."""

    PROVIDER_FIELDS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        **dict.fromkeys(
            ("model_path", "n_ctx", "n_threads", "n_gpu_layers", "seed", "warmup"), ("llamacpp",)
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
    footprint_mb: int = Field(400, ge=0, description="declared memory while loaded (VRAM on cuda)")
    idle_unload_s: float | None = Field(None, gt=0, description="None: the models default")
    max_tokens: int = Field(256, ge=1, description="default reply length")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    # llamacpp
    model_path: Path | None = Field(None, description="a GGUF file; None: embedded SmolLM2-135M")
    n_ctx: int = Field(2048, ge=256)
    n_threads: int = Field(2, ge=1, description="llama.cpp CPU threads (pass explicitly)")
    n_gpu_layers: int = Field(-1, description="layers offloaded when device is cuda (-1: all)")
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


def create_llm(settings: LlmSettings) -> Llm:
    """The explicit provider registry for chat models."""
    if settings.provider == "llamacpp":
        from core.models.llamacpp.llm import LlamaCppLlm

        return LlamaCppLlm(settings)
    if settings.provider == "ollama":
        from core.models.ollama.llm import OllamaLlm

        return OllamaLlm(settings)
    from core.models.openai_compat.llm import OpenAiCompatLlm

    return OpenAiCompatLlm(settings)
