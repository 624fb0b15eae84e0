"""Chat through an OpenAI-compatible chat-completions API, streamed as server-sent events.

Servers: vLLM, llama-server, Ollama's /v1, DeepSeek, DashScope compatible mode, GLM (its API
lives under ``/api/paas/v4``: set ``chat_path``). The request is ``POST base_url + chat_path``
with ``stream: true``; the reply is ``data: {json}`` events (a space after ``data:`` or not,
``: comment`` keep-alives, ``data: [DONE]`` at the end). Text comes in
``choices[0].delta.content``; reasoning models' ``reasoning_content`` is never spoken; tool calls
come as ``delta.tool_calls`` fragments keyed by ``index`` (OpenAI, DeepSeek, DashScope send the
arguments in pieces, GLM in one) and are yielded whole as :class:`ToolCall` at the end.
A ``data: {"error": ...}`` event (or an ``event: error`` one) fails the request.

Runs on the event loop (a remote backend, see core.models.remote): cancel closes the response,
so the server stops generating. The blocking ``stream_chat`` runs the same coroutine on the
backend's private loop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.errors import InferenceError, ModelLoadError
from core.models.llm import ChatEvent, ChatMessage, LlmSettings, RemoteLlm, ToolCall, ToolSpec
from core.models.remote import (
    RemoteBackend,
    RetryPolicy,
    bearer,
    check_status,
    with_retries,
)

_DONE = "[DONE]"
SERVICE = "LLM server"


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


def message_json(message: ChatMessage) -> dict[str, Any]:
    """A ChatMessage in the OpenAI wire shape (assistant tool calls, tool results)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    return out


def tool_json(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatStreamParser:
    """Feeds SSE lines, returns text pieces; collects tool-call fragments for :meth:`calls`."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}
        self._event = ""
        self.done = False

    def feed(self, line: str) -> str:
        if line.startswith("event:"):
            self._event = line[len("event:") :].strip()
            return ""
        if line.strip() == f"data: {_DONE}" or line.strip() == f"data:{_DONE}":
            self.done = True
            return ""
        payload = parse_sse_line(line)
        if payload is None:
            if not line.strip():
                self._event = ""
            return ""
        if "error" in payload or self._event == "error":
            raise InferenceError(f"LLM server error: {payload.get('error', payload)}")
        choices = payload.get("choices") or []
        if not choices:
            return ""  # usage-only chunk (stream_options), DashScope's final chunk
        delta = choices[0].get("delta") or {}
        for fragment in delta.get("tool_calls") or []:
            self._add_fragment(fragment)
        content = delta.get("content")
        return content if isinstance(content, str) else ""

    def _add_fragment(self, fragment: dict[str, Any]) -> None:
        index = fragment.get("index", len(self._calls))
        call = self._calls.setdefault(int(index), _PartialCall())
        if fragment.get("id"):
            call.id = str(fragment["id"])
        function = fragment.get("function") or {}
        if function.get("name"):
            call.name = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments.append(arguments)
        elif arguments is not None:  # some servers send an object instead of JSON text
            call.arguments.append(json.dumps(arguments, ensure_ascii=False))

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                id=call.id or f"call_{index}", name=call.name, arguments="".join(call.arguments)
            )
            for index, call in sorted(self._calls.items())
            if call.name
        ]


class OpenAiCompatLlm(RemoteBackend, RemoteLlm):
    def __init__(self, settings: LlmSettings) -> None:
        super().__init__()
        self._settings = settings
        self._policy = RetryPolicy(settings.max_retries, settings.retry_backoff_s)

    @property
    def base_url(self) -> str:
        return self._settings.base_url.rstrip("/")

    @property
    def chat_url(self) -> str:
        return self.base_url + "/" + self._settings.chat_path.lstrip("/")

    def new_http_client(self) -> httpx.AsyncClient:
        s = self._settings
        return httpx.AsyncClient(
            headers=bearer(s.api_key),
            timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
            trust_env=False,
        )

    async def aload(self) -> None:
        if not self._settings.base_url.startswith(("http://", "https://")):
            raise ModelLoadError(f"llm.base_url is not an http(s) URL: {self._settings.base_url}")
        if not self._settings.probe_on_load:
            return
        url = self.base_url + "/" + self._settings.models_path.lstrip("/")
        try:
            response = await self.http().get(url)
        except httpx.HTTPError as exc:
            raise ModelLoadError(f"LLM server {self.base_url} is not reachable: {exc}") from exc
        if response.status_code in (401, 403):
            raise ModelLoadError(
                f"LLM server {self.base_url} refused the API key (HTTP {response.status_code})"
            )
        if response.status_code >= 500:
            raise ModelLoadError(f"LLM server {self.base_url} answered {response.status_code}")

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
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        if tools:
            body["tools"] = [tool_json(t) for t in tools]
        body.update(self._settings.extra_body)
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
        return with_retries(lambda: self._attempt(body), self._policy, SERVICE, self.chat_url)

    async def _attempt(self, body: dict[str, Any]) -> AsyncGenerator[ChatEvent, None]:
        parser = ChatStreamParser()
        async with self.http().stream("POST", self.chat_url, json=body) as response:
            await check_status(SERVICE, response)
            async for line in response.aiter_lines():
                piece = parser.feed(line)
                if piece:
                    yield piece
                if parser.done:
                    break
        for call in parser.calls():
            yield call
