"""Chat language models: messages in, streamed text pieces out, stoppable between tokens.

``LlmSettings`` configures the one chat model; :func:`create_llm` is the explicit factory that
maps ``provider`` to a backend class (imported lazily, so selecting one provider never imports
another provider's native library).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from core.models.base import CancelCheck, ModelBackend


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


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


class LlmSettings(BaseModel):
    """The chat model. ``llamacpp`` runs a local GGUF; ``openai`` talks to Ollama/vLLM."""

    provider: Literal["llamacpp", "openai"] = "llamacpp"
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
    # openai-compatible HTTP (Ollama: http://127.0.0.1:11434, vLLM: http://127.0.0.1:8000)
    base_url: str = "http://127.0.0.1:11434"
    model: str = Field("qwen2.5:7b-instruct", description="model name sent to the server")
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0, description="connect/read timeout of one request")
    probe_on_load: bool = Field(True, description="GET /v1/models at load to fail early")


def create_llm(settings: LlmSettings) -> Llm:
    """The explicit provider registry for chat models."""
    if settings.provider == "llamacpp":
        from core.models.llamacpp.llm import LlamaCppLlm

        return LlamaCppLlm(settings)
    from core.models.openai_compat.llm import OpenAiCompatLlm

    return OpenAiCompatLlm(settings)
