"""Chat through an OpenAI-compatible server (Ollama, vLLM): streamed /v1/chat/completions.

The reply arrives as server-sent events (``data: {json}`` lines, ``data: [DONE]`` at the end);
``check()`` runs before each event, and cancelling closes the response so the server stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from core.errors import InferenceError, ModelLoadError
from core.models.base import CancelCheck
from core.models.llm import ChatMessage, Llm, LlmSettings

_DONE = "[DONE]"


def parse_sse_line(line: str) -> dict[str, Any] | None:
    """One SSE line to its JSON payload; None for comments, blanks, other fields and [DONE]."""
    if not line.startswith("data:"):
        return None
    data = line[len("data:") :].strip()
    if not data or data == _DONE:
        return None
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InferenceError(f"bad SSE payload from the LLM server: {data[:200]!r}") from exc
    if not isinstance(payload, dict):
        raise InferenceError(f"unexpected SSE payload from the LLM server: {data[:200]!r}")
    return payload


class OpenAiCompatLlm(Llm):
    def __init__(self, settings: LlmSettings) -> None:
        self._settings = settings
        self._client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return self._settings.base_url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        key = self._settings.api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    def load(self) -> None:
        client = httpx.Client(
            base_url=self.base_url, headers=self._headers(), timeout=self._settings.timeout_s
        )
        if self._settings.probe_on_load:
            try:
                response = client.get("/v1/models")
                response.raise_for_status()
            except httpx.HTTPError as exc:
                client.close()
                raise ModelLoadError(f"LLM server {self.base_url} is not reachable: {exc}") from exc
        self._client = client

    def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        if self._client is None:
            raise InferenceError("OpenAI-compatible LLM is not loaded")
        body = {
            "model": self._settings.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        check()
        try:
            with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    raise InferenceError(
                        f"LLM server answered {response.status_code}: {detail}",
                        retryable=response.status_code >= 500,
                    )
                for line in response.iter_lines():
                    check()  # before each token; leaving the block closes the connection
                    if line.strip() == f"data: {_DONE}":
                        return
                    payload = parse_sse_line(line)
                    if payload is None:
                        continue
                    piece = _delta_text(payload)
                    if piece:
                        yield piece
        except httpx.HTTPError as exc:
            raise InferenceError(f"LLM server request failed: {exc}", retryable=True) from exc


def _delta_text(payload: dict[str, Any]) -> str:
    if "error" in payload:
        raise InferenceError(f"LLM server error: {payload['error']}")
    choices = payload.get("choices") or []
    if not choices:
        return ""
    delta = choices[0].get("delta") or {}
    content = delta.get("content")
    return content if isinstance(content, str) else ""
