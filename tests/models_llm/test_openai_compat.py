"""OpenAI-compatible backend against a tiny stand-in server on 127.0.0.1 (real HTTP + SSE)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.errors import InferenceError, JobCancelled, ModelLoadError
from core.models.base import never_cancelled
from core.models.llm import ChatMessage, LlmSettings, create_llm
from core.models.openai_compat.llm import OpenAiCompatLlm, parse_sse_line

WORDS = ["Paris", " is", " the", " capital", " of", " France", "."]


class StandIn(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]
    headers_seen: list[str]
    status = 200
    sent_events = 0


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "stand-in"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.requests.append(json.loads(self.rfile.read(length)))
        self.server.headers_seen.append(self.headers.get("Authorization", ""))
        if self.server.status != 200:
            self.send_response(self.server.status)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"boom!")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        first = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        events = [first] + [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in WORDS]
        try:
            self.wfile.write(b": keep-alive comment\n\n")
            for event in events:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                self.server.sent_events += 1
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server() -> Iterator[StandIn]:
    srv = StandIn(("127.0.0.1", 0), Handler)
    srv.requests, srv.headers_seen = [], []
    thread = threading.Thread(target=srv.serve_forever, name="openai-stand-in", daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def make_llm(server: StandIn, **extra: Any) -> OpenAiCompatLlm:
    host, port = server.server_address[:2]
    settings = LlmSettings(
        provider="openai", base_url=f"http://{host!s}:{port}", model="m", **extra
    )
    llm = create_llm(settings, Path("unused"))
    assert isinstance(llm, OpenAiCompatLlm)
    return llm


def test_streams_pieces_from_sse(server: StandIn) -> None:
    llm = make_llm(server, api_key="sk-test")
    llm.load()
    messages = [ChatMessage("user", "capital of France?")]
    pieces = list(llm.stream_chat(messages, max_tokens=16, temperature=0.2, check=never_cancelled))
    llm.unload()
    assert pieces == WORDS
    request = server.requests[0]
    assert request["stream"] is True and request["model"] == "m" and request["max_tokens"] == 16
    assert request["messages"] == [{"role": "user", "content": "capital of France?"}]
    assert server.headers_seen == ["Bearer sk-test"]


def test_cancel_stops_reading(server: StandIn) -> None:
    llm = make_llm(server)
    llm.load()
    received: list[str] = []

    def check() -> None:
        if len(received) >= 2:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        for piece in llm.stream_chat(
            [ChatMessage("user", "hi")], max_tokens=8, temperature=0, check=check
        ):
            received.append(piece)
    assert received == WORDS[:2]
    llm.unload()


def test_server_error_is_an_inference_error(server: StandIn) -> None:
    server.status = 503
    llm = make_llm(server)
    llm.load()
    with pytest.raises(InferenceError, match="503") as info:
        list(
            llm.stream_chat(
                [ChatMessage("user", "hi")], max_tokens=8, temperature=0, check=never_cancelled
            )
        )
    assert info.value.retryable
    llm.unload()


def test_unreachable_server_is_a_load_error() -> None:
    llm = create_llm(
        LlmSettings(provider="openai", base_url="http://127.0.0.1:9", timeout_s=2), Path("unused")
    )
    with pytest.raises(ModelLoadError, match="not reachable"):
        llm.load()


def test_parse_sse_line() -> None:
    assert parse_sse_line('data: {"a": 1}') == {"a": 1}
    assert parse_sse_line("data: [DONE]") is None
    assert parse_sse_line(": comment") is None
    assert parse_sse_line("event: message") is None
    with pytest.raises(InferenceError):
        parse_sse_line("data: {not json")
