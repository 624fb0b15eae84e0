"""Remote LLM providers against loopback servers speaking each API's real wire format."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from core.errors import InferenceError
from core.models.base import never_cancelled
from core.models.llm import ChatMessage, LlmSettings, ToolCall, ToolSpec, create_llm
from core.scheduler import ExecMode, JobSpec, Lane
from tests.remote.servers import WORDS, RunningServer

HI = [ChatMessage("system", "你是小优。"), ChatMessage("user", "北京是哪里？")]
VOLUME = ToolSpec(
    "self_audio_speaker_set_volume",
    "设置音量",
    {"type": "object", "properties": {"volume": {"type": "integer"}}},
)
FLAVOURS = [
    ("openai", "/v1/chat/completions"),  # OpenAI, vLLM, Ollama /v1
    ("openai", "/chat/completions"),  # DeepSeek
    ("openai", "/compatible-mode/v1/chat/completions"),  # DashScope
    ("openai", "/api/paas/v4/chat/completions"),  # GLM
    ("ollama", "/api/chat"),
]


def settings(server: RunningServer, provider: str, path: str, **extra: Any) -> LlmSettings:
    return LlmSettings(
        provider=provider,  # type: ignore[arg-type]
        base_url=server.url,
        chat_path=path,
        model="qwen-plus",
        api_key="sk-test",
        retry_backoff_s=0.01,
        **extra,
    )


async def collect(llm: Any, **kw: Any) -> list[Any]:
    return [e async for e in llm.astream_chat(HI, max_tokens=32, temperature=0.1, **kw)]


@pytest.mark.parametrize(("provider", "path"), FLAVOURS)
async def test_streams_text_in_each_wire_format(
    server: RunningServer, provider: str, path: str
) -> None:
    llm = create_llm(settings(server, provider, path))
    await llm.aload()  # type: ignore[attr-defined]
    try:
        assert await collect(llm) == WORDS  # DeepSeek's reasoning_content is not spoken
    finally:
        await llm.aclose()  # type: ignore[attr-defined]
    seen = server.state.requests[-1]
    assert seen["path"] == path  # GLM's /api/paas/v4 is reachable (was always /v1/...)
    assert seen["auth"] == "Bearer sk-test"
    body = seen["body"]
    assert body["stream"] is True and body["model"] == "qwen-plus"
    assert body["messages"][1] == {"role": "user", "content": "北京是哪里？"}
    if provider == "ollama":
        assert body["options"] == {"num_predict": 32, "temperature": 0.1}
    else:
        assert body["max_tokens"] == 32


@pytest.mark.parametrize(("provider", "path"), FLAVOURS)
async def test_tool_calls_openai_style(server: RunningServer, provider: str, path: str) -> None:
    llm = create_llm(settings(server, provider, path))
    events = await collect(llm, tools=[VOLUME])
    await llm.aclose()  # type: ignore[attr-defined]
    assert len(events) == 1 and isinstance(events[0], ToolCall)
    assert events[0].name == VOLUME.name and events[0].arguments == '{"volume": 60}'
    tool = server.state.requests[-1]["body"]["tools"][0]
    assert tool == {
        "type": "function",
        "function": {
            "name": VOLUME.name,
            "description": "设置音量",
            "parameters": dict(VOLUME.parameters),
        },
    }


async def test_tool_results_go_back_in_openai_shape(server: RunningServer) -> None:
    llm = create_llm(settings(server, "openai", "/v1/chat/completions"))
    call = ToolCall("call_abc", VOLUME.name, '{"volume": 60}')
    history = [
        *HI,
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", '{"ok": true}', tool_call_id="call_abc"),
    ]
    pieces = [e async for e in llm.astream_chat(history, max_tokens=8, temperature=0)]  # type: ignore[attr-defined]
    await llm.aclose()  # type: ignore[attr-defined]
    assert pieces == WORDS
    sent = server.state.requests[-1]["body"]["messages"]
    assert sent[2]["tool_calls"][0] == {
        "id": "call_abc",
        "type": "function",
        "function": {"name": VOLUME.name, "arguments": '{"volume": 60}'},
    }
    assert sent[3] == {"role": "tool", "content": '{"ok": true}', "tool_call_id": "call_abc"}


async def test_retries_retryable_statuses_then_streams(server: RunningServer) -> None:
    server.state.fail_next = [503, 429]
    llm = create_llm(settings(server, "openai", "/v1/chat/completions"))
    assert await collect(llm) == WORDS
    await llm.aclose()  # type: ignore[attr-defined]
    assert len(server.state.requests) == 3


async def test_no_retry_on_client_errors(server: RunningServer) -> None:
    server.state.fail_next = [400]
    llm = create_llm(settings(server, "openai", "/v1/chat/completions"))
    with pytest.raises(InferenceError, match="HTTP 400") as caught:
        await collect(llm)
    await llm.aclose()  # type: ignore[attr-defined]
    assert not caught.value.retryable and len(server.state.requests) == 1


async def test_gives_up_after_max_retries(server: RunningServer) -> None:
    server.state.fail_next = [502, 502, 502]
    llm = create_llm(settings(server, "openai", "/v1/chat/completions", max_retries=1))
    with pytest.raises(InferenceError, match="HTTP 502") as caught:
        await collect(llm)
    await llm.aclose()  # type: ignore[attr-defined]
    assert caught.value.retryable and len(server.state.requests) == 2


async def test_read_timeout_is_an_inference_error(server: RunningServer) -> None:
    server.state.first_token_delay_s = 1.0
    llm = create_llm(
        settings(server, "openai", "/v1/chat/completions", timeout_s=0.2, max_retries=0)
    )
    t0 = time.perf_counter()
    with pytest.raises(InferenceError, match="timed out"):
        await collect(llm)
    assert time.perf_counter() - t0 < 0.9
    await llm.aclose()  # type: ignore[attr-defined]


def test_blocking_interface_uses_the_same_code(server: RunningServer) -> None:
    llm = create_llm(settings(server, "ollama", "/api/chat"))
    llm.load()
    try:
        out = list(llm.stream_chat(HI, max_tokens=8, temperature=0, check=never_cancelled))
    finally:
        llm.unload()
    assert out == WORDS


async def test_scheduled_chat_runs_on_the_loop_and_cancel_closes_stream(
    server: RunningServer, make_stack: Any
) -> None:
    server.state.token_delay_s = 0.2
    models = {"llm": {"provider": "openai", "base_url": server.url, "model": "m"}}
    async with make_stack(models) as (sched, _manager, inference):
        handle = inference.chat(HI, lane=Lane.INTERACTIVE, owner="qq:group:1")
        stream = handle.stream()
        first = await stream.__anext__()
        # the reply guard may merge pieces: a reply starting like the question ("北京") is held
        # until it is clearly not a copy of it
        assert first and "".join(WORDS).startswith(first), first
        job = sched.job(handle.id)
        assert job is not None and job["mode"] == "async", job
        assert job["resources"] == {"remote:llm": 1}
        assert threading.active_count() < 20
        handle.cancel()
        for _ in range(50):
            if server.state.aborted_streams:
                break
            await asyncio.sleep(0.02)
        assert server.state.aborted_streams == 1  # the server saw the connection close
        assert server.state.open_streams == 0


async def test_remote_chat_needs_no_thread_and_no_cpu_slot(
    server: RunningServer, make_stack: Any
) -> None:
    """Every thread and the only cpu slot are busy: a remote chat still completes."""
    models = {"llm": {"provider": "openai", "base_url": server.url, "model": "m"}}
    async with make_stack(models, resources={"cpu": 1}, thread_workers=1) as (sched, _, inf):
        release = threading.Event()

        def hog(ctx: Any) -> None:
            release.wait(10)

        blocker = sched.submit(
            hog, spec=JobSpec(kind="hog", mode=ExecMode.THREAD, resources={"cpu": 1})
        )
        await asyncio.sleep(0.05)
        try:
            handle = inf.chat(HI, lane=Lane.INTERACTIVE, owner="qq:group:1")
            pieces = await asyncio.wait_for(_all(handle), 5)
        finally:
            release.set()
        await blocker.result()
        assert "".join(pieces) == "".join(WORDS)  # the reply guard may merge pieces


async def test_remote_concurrency_is_bounded_by_its_resource(
    server: RunningServer, make_stack: Any
) -> None:
    server.state.token_delay_s = 0.03
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.state.open_streams)
            await asyncio.sleep(0.005)

    models = {
        "llm": {"provider": "openai", "base_url": server.url, "model": "m"},
        "remote": {"llm_concurrency": 2},
    }
    async with make_stack(models) as (_, _, inf):
        watcher = asyncio.ensure_future(watch())
        handles = [inf.chat(HI, lane=Lane.INTERACTIVE, owner=f"qq:{i}") for i in range(6)]
        results = await asyncio.gather(*(_all(h) for h in handles))
        watcher.cancel()
    assert all("".join(r) == "".join(WORDS) for r in results)  # the guard may merge pieces
    assert peak == 2


async def _all(handle: Any) -> list[Any]:
    return [piece async for piece in handle.stream()]


async def test_chat_events_offers_tools_through_the_scheduler(
    server: RunningServer, make_stack: Any
) -> None:
    models = {"llm": {"provider": "ollama", "base_url": server.url, "model": "m"}}
    async with make_stack(models) as (_, _, inf):
        handle = inf.chat_events(HI, tools=[VOLUME], lane=Lane.REALTIME, owner="device:1")
        events = await _all(handle)
    assert events == [ToolCall("call_0", VOLUME.name, '{"volume": 60}')]
