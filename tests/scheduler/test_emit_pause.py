"""A job waiting in emit for its consumer (backpressure) pauses there when a higher lane needs
what it holds (issue 14): a device's LLM waiting for its own TTS no longer keeps the one LLM
context from another device's turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.errors import JobCancelled
from core.scheduler import ExecMode, JobContext, JobHandle, JobSpec, JobStatus, Lane, Scheduler

from .conftest import MakeScheduler

NEEDS = {"cpu": 1, "model:llm": 1}


class Model:
    """The shared model object: whoever ran last owns its state."""

    def __init__(self) -> None:
        self.owner = ""
        self.log: list[str] = []

    def save_state(self) -> object:
        self.log.append("save")
        return self.owner

    def restore_state(self, state: object) -> None:
        self.log.append("restore")
        self.owner = str(state)


def generate(ctx: JobContext, model: Model, name: str, tokens: int) -> int:
    model.owner = name
    for i in range(tokens):
        ctx.checkpoint_blocking(model)
        assert model.owner == name, "the paused job's state was not restored"
        ctx.emit_blocking(f"{name}{i}")
    return tokens


async def _reading_qq(
    make_scheduler: MakeScheduler, *, stream_buffer: int
) -> tuple[Scheduler, Model, JobHandle[int], AsyncIterator[str]]:
    """A one-CPU scheduler with one LLM context and a preemptible "qq" generation of 6
    pieces, submitted, with its stream."""
    s = await make_scheduler(resources={"cpu": 1})
    s.define_resource("model:llm", 1)
    model = Model()
    spec = JobSpec(
        kind="llm",
        mode=ExecMode.THREAD,
        resources=NEEDS,
        preemptible=True,
        stream_buffer=stream_buffer,
    )
    job = s.submit(generate, model, "qq", 6, spec=spec)
    return s, model, job, job.stream()


async def test_a_blocking_job_waiting_in_emit_pauses_for_a_higher_lane(
    make_scheduler: MakeScheduler,
) -> None:
    s, model, slow, stream = await _reading_qq(make_scheduler, stream_buffer=2)
    first = await asyncio.wait_for(anext(stream), 2.0)  # then nobody reads: it waits in emit
    await asyncio.sleep(0.05)
    assert slow.status is JobStatus.RUNNING and s.stats()["resources"]["model:llm"]["used"] == 1
    realtime = JobSpec(
        kind="llm", lane=Lane.REALTIME, mode=ExecMode.THREAD, resources=NEEDS, stream_buffer=8
    )
    voice = s.submit(generate, model, "rt", 3, spec=realtime)
    assert await asyncio.wait_for(voice, 2.0) == 3  # old code: waited for the reader forever
    assert model.log[:1] == ["save"]  # paused in emit with its state saved
    rest = [piece async for piece in stream]
    assert [first, *rest] == [f"qq{i}" for i in range(6)]  # nothing lost or repeated
    assert await slow == 6
    assert model.log == ["save", "restore"]


async def test_a_job_without_checkpoints_keeps_waiting_in_emit(
    make_scheduler: MakeScheduler,
) -> None:
    """Code that never reached a checkpoint cannot be paused: emit only waits, as before."""
    s = await make_scheduler(resources={"cpu": 1})
    s.define_resource("model:llm", 1)

    def plain(ctx: JobContext) -> int:
        for i in range(4):
            ctx.emit_blocking(i)
        return 4

    spec = JobSpec(
        kind="llm", mode=ExecMode.THREAD, resources=NEEDS, preemptible=True, stream_buffer=1
    )
    slow = s.submit(plain, spec=spec)
    stream = slow.stream()
    await asyncio.wait_for(anext(stream), 2.0)
    realtime = JobSpec(kind="llm", lane=Lane.REALTIME, mode=ExecMode.THREAD, resources=NEEDS)
    voice = s.submit(generate, Model(), "rt", 1, spec=realtime)
    await asyncio.sleep(0.1)
    assert voice.status is JobStatus.QUEUED
    assert [x async for x in stream] == [1, 2, 3]
    assert await slow == 4 and await asyncio.wait_for(voice, 2.0) == 1


async def test_a_held_stream_stops_the_job_at_its_next_emit_until_released(
    make_scheduler: MakeScheduler,
) -> None:
    """hold_stream: the job waits at its next emit even with room in the buffer (a device's
    LLM while its first sentence's TTS has the CPU), loses nothing, and goes on when released."""
    s = await make_scheduler(resources={"cpu": 1})
    s.define_resource("model:llm", 1)
    spec = JobSpec(kind="llm", mode=ExecMode.THREAD, resources=NEEDS, stream_buffer=8)
    model = Model()
    job = s.submit(generate, model, "qq", 6, spec=spec)
    stream = job.stream()
    assert await asyncio.wait_for(anext(stream), 2.0) == "qq0"
    job.hold_stream()
    await asyncio.sleep(0.1)  # with a free buffer of 8 the job would have finished by now
    assert job.status is JobStatus.RUNNING
    job.hold_stream(False)
    rest = [piece async for piece in stream]
    assert rest[-1] == "qq5" and len(rest) == 5  # nothing lost or repeated
    assert await job == 6


async def test_a_held_job_still_pauses_for_a_higher_lane_and_is_cancelled(
    make_scheduler: MakeScheduler,
) -> None:
    s, model, held, stream = await _reading_qq(make_scheduler, stream_buffer=8)
    await asyncio.wait_for(anext(stream), 2.0)
    held.hold_stream()
    await asyncio.sleep(0.05)
    realtime = JobSpec(
        kind="llm", lane=Lane.REALTIME, mode=ExecMode.THREAD, resources=NEEDS, stream_buffer=8
    )
    voice = s.submit(generate, model, "rt", 3, spec=realtime)
    assert await asyncio.wait_for(voice, 2.0) == 3  # the held job gave its context up
    assert held.cancel()
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(held.result(), 2.0)
