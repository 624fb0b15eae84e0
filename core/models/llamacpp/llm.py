"""Chat through llama-cpp-python: any GGUF file, chat template taken from the GGUF metadata.

Without ``model_path`` the embedded model chosen by ``embedded`` is used
(:mod:`core.models.llamacpp.embedded`: Qwen2.5-Coder-0.5B-Instruct by default, SmolLM2-135M
as the small English-only choice). Token counts come from the model's own tokenizer, and
``repeat_penalty`` is applied to every request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import InferenceError, ModelLoadError
from core.models.base import CancelCheck
from core.models.llamacpp.embedded import embedded_gguf
from core.models.llm import ChatMessage, Llm, LlmSettings

_LOCK_POLL_S = 0.05  # how often a waiting request re-checks for cancellation


class LlamaCppLlm(Llm):
    """One ``llama_cpp.Llama``; requests are serialised (a context is not thread-safe)."""

    def __init__(self, settings: LlmSettings, *, cache_dir: Path) -> None:
        self._settings = settings
        self._cache_dir = cache_dir
        self._llama: Any = None
        self._lock = threading.Lock()
        self.model_path: Path | None = settings.model_path

    def load(self) -> None:
        path = self._settings.model_path or embedded_gguf(self._settings.embedded, self._cache_dir)
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelLoadError(f"llama-cpp-python is not installed: {exc}") from exc
        on_gpu = self._settings.device.startswith("cuda")
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self._settings.n_ctx,
                n_threads=self._settings.n_threads,
                n_threads_batch=self._settings.n_threads,
                n_gpu_layers=self._settings.n_gpu_layers if on_gpu else 0,
                seed=self._settings.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc
        self.model_path = path
        if self._settings.warmup:
            self._warm_up(path)

    def _warm_up(self, path: Path) -> None:
        """One greedy token through the chat template: touches every weight page and sets up
        the compute buffers now, not during the first user's request (~0.15 s on SmolLM2)."""
        try:
            self._llama.create_chat_completion(
                messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0
            )
        except (ValueError, RuntimeError) as exc:
            self.unload()
            raise ModelLoadError(f"llama.cpp could not run {path}: {exc}") from exc

    def unload(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

    def count_tokens(self, text: str) -> int:
        llama = self._llama
        if llama is None or not text:
            return super().count_tokens(text)
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def context_tokens(self) -> int | None:
        llama = self._llama
        return None if llama is None else int(llama.n_ctx())

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        while not self._lock.acquire(timeout=_LOCK_POLL_S):
            check()
        try:
            yield from self._generate(messages, max_tokens, temperature, check)
        finally:
            self._lock.release()

    def _generate(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        if self._llama is None:
            raise InferenceError("llama.cpp model is not loaded")
        check()
        chunks = self._llama.create_chat_completion(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            max_tokens=max_tokens,
            temperature=temperature,
            repeat_penalty=self._settings.repeat_penalty,
            stream=True,
        )
        try:
            while True:
                check()  # before each token: a cancel stops generation within one token
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                except (RuntimeError, ValueError) as exc:
                    raise InferenceError(f"llama.cpp generation failed: {exc}") from exc
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        finally:
            chunks.close()
