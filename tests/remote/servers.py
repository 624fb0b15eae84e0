"""Loopback stand-ins for the model services users already run, speaking their real wire formats.

One aiohttp app (real HTTP, real SSE/NDJSON streaming, a real WebSocket) on 127.0.0.1 serves:

- ``POST /v1/chat/completions``: OpenAI / vLLM SSE (``data: {json}``, ``data: [DONE]``)
- ``POST /chat/completions``: DeepSeek (``: keep-alive`` comments, ``reasoning_content``)
- ``POST /compatible-mode/v1/chat/completions``: DashScope (``data:{json}``, usage chunk)
- ``POST /api/paas/v4/chat/completions``: GLM (tool calls whole in one delta)
- ``POST /api/chat``, ``GET /api/tags``: Ollama's native NDJSON
- ``POST /v1/audio/transcriptions`` (multipart WAV in), ``POST /v1/audio/speech`` (pcm, wav,
  mp3 streamed in chunks): the OpenAI audio API
- ``GET /consumer/speech/synthesize/readaloud/edge/v1``: Edge's WebSocket, as edge-tts expects

Knobs on :class:`FakeState` (set from the test thread): per-token delay, statuses to fail the
next requests with, the reply words. Everything the clients sent is recorded.

    python -m tests.remote.servers --port 18080     # for trying the service by hand
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import ClientConnectionResetError, WSMsgType, web

EDGE_PATH = "/consumer/speech/synthesize/readaloud/edge/v1"
TRUSTED_TOKEN = "6A5AA1D4EAFF4E9FB37E23D68491D6F4"  # edge-tts's public client token
WORDS = ["北京", "是", "中国", "的", "首都", "。"]
TONE_HZ = 440.0
TTS_RATE_HZ = 24_000


@dataclass
class FakeState:
    words: list[str] = field(default_factory=lambda: list(WORDS))
    token_delay_s: float = 0.0
    first_token_delay_s: float = 0.0
    fail_next: list[int] = field(default_factory=list)  # HTTP statuses for the next requests
    retry_after: str | None = None
    transcript: str = "把音量调到六十"
    tts_s_per_char: float = 0.08
    tts_chunk_delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    edge_voices: list[str] = field(default_factory=list)
    edge_texts: list[str] = field(default_factory=list)  # the text of each SSML request
    edge_config: list[str] = field(default_factory=list)
    edge_queries: list[dict[str, str]] = field(default_factory=list)
    open_streams: int = 0
    aborted_streams: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, **item: Any) -> None:
        with self.lock:
            self.requests.append(item)

    def take_failure(self) -> int | None:
        with self.lock:
            return self.fail_next.pop(0) if self.fail_next else None


def tone(seconds: float, rate_hz: int = TTS_RATE_HZ) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (0.3 * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype("<i2")


def mp3_bytes(samples: np.ndarray, rate_hz: int = TTS_RATE_HZ) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, samples.astype(np.float32) / 32768.0, rate_hz, format="MP3")
    return buf.getvalue()


def wav_header_and_pcm(samples: np.ndarray, rate_hz: int = TTS_RATE_HZ) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


STATE = web.AppKey("state", FakeState)


def _state(request: web.Request) -> FakeState:
    return request.app[STATE]


async def _failure(request: web.Request) -> web.Response | None:
    state = _state(request)
    status = state.take_failure()
    if status is None:
        return None
    headers = {"Retry-After": state.retry_after} if state.retry_after else {}
    body = {"error": {"message": f"stand-in failure {status}", "type": "server_error"}}
    return web.json_response(body, status=status, headers=headers)


# -- chat completions (SSE) -----------------------------------------------------------------
FLAVOURS = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "deepseek",
    "/compatible-mode/v1/chat/completions": "dashscope",
    "/api/paas/v4/chat/completions": "glm",
}


def _tool_call_chunks(flavour: str, name: str) -> list[dict[str, Any]]:
    arguments = json.dumps({"volume": 60})
    if flavour == "glm":  # whole call in one delta
        call = {
            "index": 0,
            "id": "call_glm_1",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return [{"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]}]
    head = {
        "index": 0,
        "id": "call_abc",
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [head]}}]}]
    for part in (arguments[:5], arguments[5:]):
        frag = {"index": 0, "function": {"arguments": part}}
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [frag]}}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return chunks


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    flavour = FLAVOURS[request.path]
    body = await request.json()
    state.record(path=request.path, auth=request.headers.get("Authorization", ""), body=body)
    failed = await _failure(request)
    if failed is not None:
        return failed
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    sep = "data:" if flavour == "dashscope" else "data: "
    state.open_streams += 1
    try:
        if flavour == "deepseek":
            await response.write(b": keep-alive\n\n")
            thought = {"choices": [{"index": 0, "delta": {"reasoning_content": "先想一想"}}]}
            await response.write(f"{sep}{json.dumps(thought, ensure_ascii=False)}\n\n".encode())
        first = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        await response.write(f"{sep}{json.dumps(first)}\n\n".encode())
        if state.first_token_delay_s:
            await asyncio.sleep(state.first_token_delay_s)
        if body.get("tools"):
            chunks = _tool_call_chunks(flavour, body["tools"][0]["function"]["name"])
        else:
            chunks = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in state.words]
            chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        for chunk in chunks:
            if state.token_delay_s:
                await asyncio.sleep(state.token_delay_s)
            await response.write(f"{sep}{json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        if flavour == "dashscope":
            usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 6}}
            await response.write(f"{sep}{json.dumps(usage)}\n\n".encode())
        await response.write(f"{sep}[DONE]\n\n".encode())
    except (ConnectionError, ClientConnectionResetError):
        state.aborted_streams += 1  # the client closed the stream (cancel)
    except asyncio.CancelledError:
        state.aborted_streams += 1
        raise
    finally:
        state.open_streams -= 1
    return response


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "stand-in", "object": "model"}]})


# -- Ollama native ----------------------------------------------------------------------------
async def ollama_tags(request: web.Request) -> web.Response:
    return web.json_response({"models": [{"name": "qwen2.5:7b-instruct"}]})


async def ollama_chat(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    body = await request.json()
    state.record(path=request.path, auth=request.headers.get("Authorization", ""), body=body)
    failed = await _failure(request)
    if failed is not None:
        return web.json_response({"error": "model is loading"}, status=failed.status)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    model = body.get("model", "")
    state.open_streams += 1

    def line(message: dict[str, Any], done: bool, **extra: Any) -> bytes:
        item = {
            "model": model,
            "created_at": "2026-12-01T10:00:00Z",
            "message": message,
            "done": done,
            **extra,
        }
        return (json.dumps(item, ensure_ascii=False) + "\n").encode()

    try:
        if body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            call = {"function": {"name": name, "arguments": {"volume": 60}}}
            await response.write(
                line({"role": "assistant", "content": "", "tool_calls": [call]}, False)
            )
        else:
            for word in state.words:
                if state.token_delay_s:
                    await asyncio.sleep(state.token_delay_s)
                await response.write(line({"role": "assistant", "content": word}, False))
        await response.write(
            line(
                {"role": "assistant", "content": ""},
                True,
                done_reason="stop",
                eval_count=len(state.words),
            )
        )
    except (ConnectionError, ClientConnectionResetError):
        state.aborted_streams += 1  # the client closed the stream (cancel)
    except asyncio.CancelledError:
        state.aborted_streams += 1
        raise
    finally:
        state.open_streams -= 1
    return response


# -- audio: transcriptions and speech ----------------------------------------------------------
async def transcriptions(request: web.Request) -> web.Response:
    state = _state(request)
    form = await request.post()
    upload = form.get("file")
    assert isinstance(upload, web.FileField), "file must be a multipart upload"
    audio = upload.file.read()
    with wave.open(io.BytesIO(audio), "rb") as w:
        rate, frames = w.getframerate(), w.getnframes()
    fields = {k: str(v) for k, v in form.items() if k != "file"}
    state.record(
        path=request.path,
        auth=request.headers.get("Authorization", ""),
        form=fields,
        rate_hz=rate,
        audio_s=frames / rate,
        filename=upload.filename,
    )
    failed = await _failure(request)
    if failed is not None:
        return failed
    fmt = fields.get("response_format", "json")
    if fmt == "text":
        return web.Response(text=state.transcript + "\n")
    body: dict[str, Any] = {"text": state.transcript}
    if fmt == "verbose_json":
        body.update({"language": "chinese", "duration": frames / rate, "segments": []})
    return web.json_response(body)


async def speech(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    body = await request.json()
    state.record(path=request.path, auth=request.headers.get("Authorization", ""), body=body)
    failed = await _failure(request)
    if failed is not None:
        return failed
    fmt = body.get("response_format", "mp3")
    samples = tone(min(3.0, state.tts_s_per_char * len(body["input"])))
    if fmt == "pcm":
        payload, ctype = samples.tobytes(), "audio/pcm"
    elif fmt == "wav":
        payload, ctype = wav_header_and_pcm(samples), "audio/wav"
    else:
        payload, ctype = mp3_bytes(samples), "audio/mpeg"
    response = web.StreamResponse(headers={"Content-Type": ctype})
    response.enable_chunked_encoding()
    await response.prepare(request)
    state.open_streams += 1
    try:
        for start in range(0, len(payload), 4800):
            if state.tts_chunk_delay_s:
                await asyncio.sleep(state.tts_chunk_delay_s)
            await response.write(payload[start : start + 4800])
    except (ConnectionError, ClientConnectionResetError):
        state.aborted_streams += 1  # the client closed the stream (cancel)
    except asyncio.CancelledError:
        state.aborted_streams += 1
        raise
    finally:
        state.open_streams -= 1
    return response


# -- Edge read-aloud WebSocket -----------------------------------------------------------------
def _edge_text(request_id: str, path: str, body: str) -> str:
    return (
        f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\n"
        f"Path:{path}\r\n\r\n{body}"
    )


def _edge_audio(request_id: str, data: bytes) -> bytes:
    """Binary frame: 2-byte big-endian header length, header lines, then MP3 bytes."""
    ctype = "Content-Type:audio/mpeg\r\n" if data else ""
    header = f"X-RequestId:{request_id}\r\n{ctype}Path:audio\r\n".encode()
    return len(header).to_bytes(2, "big") + header + data


def _headers(message: str) -> tuple[dict[str, str], str]:
    head, _, body = message.partition("\r\n\r\n")
    headers = dict(line.split(":", 1) for line in head.split("\r\n") if ":" in line)
    return headers, body


async def edge(request: web.Request) -> web.WebSocketResponse:
    state = _state(request)
    query = dict(request.query)
    with state.lock:
        state.edge_queries.append(query)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    if query.get("TrustedClientToken") != TRUSTED_TOKEN or "Sec-MS-GEC" not in query:
        await ws.close(code=1008, message=b"bad token")
        return ws
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            continue
        headers, body = _headers(message.data)
        if headers.get("Path") == "speech.config":
            with state.lock:
                state.edge_config.append(body)
            continue
        if headers.get("Path") != "ssml":
            continue
        request_id = headers["X-RequestId"]
        voice = body.split("<voice name='", 1)[1].split("'", 1)[0]
        text = body.split("volume='", 1)[1].split(">", 1)[1].split("</prosody>", 1)[0]
        with state.lock:
            state.edge_voices.append(voice)
            state.edge_texts.append(text)
        await ws.send_str(_edge_text(request_id, "turn.start", '{"context":{}}'))
        await ws.send_str(_edge_text(request_id, "response", '{"context":{}}'))
        payload = mp3_bytes(tone(min(3.0, state.tts_s_per_char * len(text))))
        for start in range(0, len(payload), 1440):
            if state.tts_chunk_delay_s:
                await asyncio.sleep(state.tts_chunk_delay_s)
            await ws.send_bytes(_edge_audio(request_id, payload[start : start + 1440]))
        meta = {
            "Metadata": [
                {
                    "Type": "SentenceBoundary",
                    "Data": {"Offset": 1000000, "Duration": 8750000, "text": {"Text": text}},
                }
            ]
        }
        await ws.send_str(_edge_text(request_id, "audio.metadata", json.dumps(meta)))
        await ws.send_bytes(_edge_audio(request_id, b""))
        await ws.send_str(_edge_text(request_id, "turn.end", "{}"))
    return ws


def make_app(state: FakeState) -> web.Application:
    app = web.Application(client_max_size=64 * 2**20)
    app[STATE] = state
    for path in FLAVOURS:
        app.router.add_post(path, chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/api/tags", ollama_tags)
    app.router.add_post("/api/chat", ollama_chat)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get(EDGE_PATH, edge)
    return app


@dataclass
class RunningServer:
    state: FakeState
    port: int
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def edge_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{EDGE_PATH}?TrustedClientToken={TRUSTED_TOKEN}"


@contextmanager
def serve_in_thread(state: FakeState | None = None, port: int = 0) -> Iterator[RunningServer]:
    """The stand-in on its own thread and loop (blocking and async clients can both use it)."""
    state = state or FakeState()
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()
    runner = web.AppRunner(make_app(state), handle_signals=False, shutdown_timeout=0.5)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        started["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=main, name="remote-stand-in", daemon=True)
    thread.start()
    ready.wait(10)
    if "port" not in started:
        raise RuntimeError("stand-in server did not start")
    try:
        yield RunningServer(state, started["port"], loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--token-delay-s", type=float, default=0.05)
    parser.add_argument("--words", type=int, default=0, help="reply of N words (0: a greeting)")
    args = parser.parse_args()
    state = FakeState(token_delay_s=args.token_delay_s)
    state.words = ["你好", "！", "我", "是", "小优", "，", "很", "高兴", "见到", "你", "。"]
    if args.words:
        state.words = [f"字{i}" for i in range(args.words)]
    with serve_in_thread(state, args.port) as server:
        print(f"stand-in model services on {server.url} (Edge: {server.edge_url})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
