"""Chat through Ollama's native API: ``POST /api/chat``, streamed as NDJSON.

Each line is one JSON object: ``{"message": {"role": "assistant", "content": "…"}, "done":
false}``; the last has ``"done": true`` (and ``done_reason``). Tool calls arrive in
``message.tool_calls`` as ``{"function": {"name", "arguments": {object}}}`` (whole, not in
fragments); errors as ``{"error": "…"}``, in a non-200 body or mid-stream. Generation options
go in ``options`` (``num_predict``, ``temperature``). The probe is ``GET /api/tags``.
Use it instead of Ollama's /v1 when you want ``keep_alive``/``options`` semantics of the
native API; both work with provider ``openai`` too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import httpx

from core.errors import InferenceError, ModelLoadError
from core.models.llm import ChatEvent, ChatMessage, LlmSettings, RemoteLlm, ToolCall, ToolSpec
from core.models.openai_compat.llm import tool_json
from core.models.remote import RemoteBackend, RetryPolicy, bearer, check_status, with_retries

SERVICE = "Ollama"


def message_json(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": _arguments_object(c.arguments)}}
            for c in message.tool_calls
        ]
    return out


def _arguments_object(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return {}


def parse_ndjson_line(line: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        payload = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InferenceError(f"bad NDJSON line from Ollama: {line[:200]!r}") from exc
    if not isinstance(payload, dict):
        raise InferenceError(f"unexpected NDJSON line from Ollama: {line[:200]!r}")
    if "error" in payload:
        raise InferenceError(f"Ollama error: {payload['error']}")
    return payload


class OllamaLlm(RemoteBackend, RemoteLlm):
    def __init__(self, settings: LlmSettings) -> None:
        super().__init__()
        self._settings = settings
        self._policy = RetryPolicy(settings.max_retries, settings.retry_backoff_s)

    @property
    def base_url(self) -> str:
        return self._settings.base_url.rstrip("/")

    def new_http_client(self) -> httpx.AsyncClient:
        s = self._settings
        return httpx.AsyncClient(
            headers=bearer(s.api_key),
            timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
            trust_env=False,
        )

    async def aload(self) -> None:
        if not self._settings.probe_on_load:
            return
        try:
            response = await self.http().get(f"{self.base_url}/api/tags")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ModelLoadError(f"Ollama at {self.base_url} is not reachable: {exc}") from exc

    def request_body(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec],
        max_tokens: int,
        temperature: float,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._settings.model,
            "messages": [message_json(m) for m in messages],
            "stream": True,
            "options": {"num_predict": max_tokens, "temperature": temperature},
        }
        if tools:
            body["tools"] = [tool_json(t) for t in tools]
        return body

    def astream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        max_tokens: int,
        temperature: float,
    ) -> AsyncGenerator[ChatEvent, None]:
        body = self.request_body(
            messages, tools=tools, max_tokens=max_tokens, temperature=temperature
        )
        url = f"{self.base_url}/api/chat"
        return with_retries(lambda: self._attempt(url, body), self._policy, SERVICE, url)

    async def _attempt(self, url: str, body: dict[str, Any]) -> AsyncGenerator[ChatEvent, None]:
        calls: list[ToolCall] = []
        async with self.http().stream("POST", url, json=body) as response:
            await check_status(SERVICE, response)
            async for line in response.aiter_lines():
                payload = parse_ndjson_line(line)
                if payload is None:
                    continue
                message = payload.get("message") or {}
                content = message.get("content")
                if isinstance(content, str) and content:
                    yield content
                for call in message.get("tool_calls") or []:
                    function = call.get("function") or {}
                    arguments = function.get("arguments", {})
                    calls.append(
                        ToolCall(
                            id=str(call.get("id") or f"call_{len(calls)}"),
                            name=str(function.get("name", "")),
                            arguments=arguments
                            if isinstance(arguments, str)
                            else json.dumps(arguments, ensure_ascii=False),
                        )
                    )
                if payload.get("done"):
                    break
        for call in calls:
            yield call
