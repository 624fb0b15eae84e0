"""ProcessWorker against a real child process hosting a test-double backend."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.errors import InferenceError, JobCancelled, WorkerDied
from core.workers.base import LOAD, Worker, WorkerCall, WorkerSpec, WorkerState, no_chunk, no_step
from core.workers.process import ProcessWorker
from tests.workers.doubles import StepsSettings, create_steps


async def started(settings: StepsSettings) -> ProcessWorker:
    worker = ProcessWorker(WorkerSpec("steps", create_steps, settings))
    await worker.start()
    await worker.call(WorkerCall("steps", LOAD), on_step=no_step, on_chunk=no_chunk)
    return worker


@pytest.fixture
async def worker() -> AsyncIterator[ProcessWorker]:
    w = await started(StepsSettings(step_s=0.01))
    try:
        yield w
    finally:
        await w.stop(2.0)


def call(method: str, *args: Any, stream: bool = False) -> WorkerCall:
    return WorkerCall("steps", method, args, stream=stream)


async def test_streams_chunks_in_order_with_a_step_each(worker: ProcessWorker) -> None:
    assert isinstance(worker, Worker) and worker.state is WorkerState.IDLE
    events: list[tuple[str, Any]] = []

    async def on_step(n: int) -> None:
        events.append(("step", n))

    async def on_chunk(x: Any) -> None:
        events.append(("chunk", x))

    result = await worker.call(call("steps", 3, stream=True), on_step=on_step, on_chunk=on_chunk)
    assert result == "done 3"
    assert events == [
        ("chunk", "s0"),
        ("step", 1),
        ("chunk", "s1"),
        ("step", 2),
        ("chunk", "s2"),
        ("step", 3),
    ]
    got: list[int] = []

    async def keep(x: Any) -> None:
        got.append(x)

    assert await worker.call(call("count", 5), on_step=no_step, on_chunk=keep) is None
    assert got == [0, 1, 2, 3, 4]
    assert os.getpid() != await worker.call(call("pid"), on_step=no_step, on_chunk=no_chunk)


async def test_backend_errors_come_back_with_their_class_and_retryable(
    worker: ProcessWorker,
) -> None:
    with pytest.raises(InferenceError, match="the double failed") as info:
        await worker.call(call("fail"), on_step=no_step, on_chunk=no_chunk)
    assert info.value.retryable is True
    assert worker.state is WorkerState.IDLE


async def test_a_cancel_at_a_step_stops_the_worker_within_that_step(worker: ProcessWorker) -> None:
    chunks: list[str] = []

    async def on_chunk(x: Any) -> None:
        chunks.append(x)

    async def on_step(n: int) -> None:
        if n == 3:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled, match="stop"):
        await worker.call(call("steps", 1000, stream=True), on_step=on_step, on_chunk=on_chunk)
    assert chunks == ["s0", "s1", "s2"]  # no step ran after the cancelled one
    assert worker.state is WorkerState.IDLE
    assert await worker.call(call("steps", 2, stream=True), on_step=no_step, on_chunk=no_chunk)


async def test_a_paused_step_holds_the_worker_still(worker: ProcessWorker) -> None:
    chunks: list[str] = []
    resume = asyncio.Event()
    paused = asyncio.Event()

    async def on_chunk(x: Any) -> None:
        chunks.append(x)

    async def on_step(n: int) -> None:
        if n == 2:
            paused.set()
            await resume.wait()  # what JobContext.checkpoint does while preempted

    task = asyncio.create_task(
        worker.call(call("steps", 4, stream=True), on_step=on_step, on_chunk=on_chunk)
    )
    await asyncio.wait_for(paused.wait(), 10)
    await asyncio.sleep(0.2)  # 20 steps' worth of time
    assert chunks == ["s0", "s1"]
    resume.set()
    assert await task == "done 4"
    assert chunks == ["s0", "s1", "s2", "s3"]


async def test_a_hard_cancelled_call_leaves_the_worker_usable(worker: ProcessWorker) -> None:
    seen = asyncio.Event()

    async def on_step(n: int) -> None:
        seen.set()

    task = asyncio.create_task(
        worker.call(call("steps", 10_000, stream=True), on_step=on_step, on_chunk=no_chunk)
    )
    await asyncio.wait_for(seen.wait(), 10)
    task.cancel()  # the scheduler cancels an ASYNC job's task
    with pytest.raises(asyncio.CancelledError):
        await task
    result = await asyncio.wait_for(
        worker.call(call("steps", 2, stream=True), on_step=no_step, on_chunk=no_chunk), 10
    )
    assert result == "done 2"


async def test_kill_9_fails_the_running_call_and_a_restart_serves_the_next() -> None:
    worker = await started(StepsSettings(step_s=0.01))
    try:
        first_pid = worker.pid
        assert first_pid is not None
        steps = 0

        async def on_step(n: int) -> None:
            nonlocal steps
            steps = n
            if n == 3:
                os.kill(first_pid, signal.SIGKILL)

        with pytest.raises(WorkerDied, match="-9") as info:
            await worker.call(call("steps", 1000, stream=True), on_step=on_step, on_chunk=no_chunk)
        assert info.value.retryable is True
        assert worker.state is WorkerState.DEAD
        with pytest.raises(WorkerDied):  # no silent reuse of a dead worker
            await worker.call(call("pid"), on_step=no_step, on_chunk=no_chunk)
        await worker.start()
        await worker.call(WorkerCall("steps", LOAD), on_step=no_step, on_chunk=no_chunk)
        pid = await worker.call(call("pid"), on_step=no_step, on_chunk=no_chunk)
        assert pid == worker.pid != first_pid
    finally:
        await worker.stop(2.0)


async def test_a_native_crash_inside_the_backend_is_worker_died() -> None:
    worker = await started(StepsSettings())
    try:
        with pytest.raises(WorkerDied):
            await worker.call(call("crash_at", 2, 5), on_step=no_step, on_chunk=no_chunk)
        await worker.start()
        await worker.call(WorkerCall("steps", LOAD), on_step=no_step, on_chunk=no_chunk)
        assert await worker.call(call("steps", 1, stream=True), on_step=no_step, on_chunk=no_chunk)
    finally:
        await worker.stop(2.0)


async def test_stop_ends_the_process() -> None:
    worker = await started(StepsSettings())
    pid = worker.pid
    assert pid is not None
    await worker.stop(2.0)
    assert worker.state is WorkerState.STOPPED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
