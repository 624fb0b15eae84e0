"""A REALTIME job waits for at most one step of one lower-lane job (issue 14, item 4's bound),
in the default configuration: ``preempt_grace_steps`` = 2 does not delay it, and what a job
yields to it is not taken by a lane the starvation bound promotes. (Before: a resumed drawing
ran its 2 grace steps first, and a promoted drawing took the GPU a chat had just given back:
3.8-4.3 SD steps in bench/gpu_bench.py --simulate.)"""

from __future__ import annotations

import asyncio
import functools
import time

from core.scheduler import JobContext, JobSpec, Lane
from tests.polling import until

from .conftest import MakeScheduler

STEP_S = 0.1  # one lower-lane step
SLACK_S = 0.05  # dispatch and loop wake-ups on a loaded box


def _stepper(steps: list[str], tag: str, step_s: float, n: int = 200):  # type: ignore[no-untyped-def]
    async def run(ctx: JobContext) -> None:
        for _ in range(n):
            await ctx.checkpoint()
            steps.append(tag)
            await asyncio.sleep(step_s)

    return run


_until = functools.partial(until, timeout_s=5.0, poll_s=0.001)


async def _voice(ctx: JobContext) -> float:
    return time.monotonic()


def _wait_s(s: object, job_id: int) -> float:
    row = s.job(job_id)  # type: ignore[attr-defined]
    return float(row["wait_s"])


async def test_a_resumed_drawing_pauses_at_its_next_step_for_realtime_despite_grace(
    make_scheduler: MakeScheduler,
) -> None:
    """Default grace (2): a drawing resumed a moment ago still pauses at its very next step
    when a REALTIME job asks (grace steps are for the lanes between)."""
    s = await make_scheduler(resources={"cpu": 1})
    assert s.settings.preempt_grace_steps == 2 and s.settings.realtime_next_step
    steps: list[str] = []
    cpu = {"cpu": 1}
    draw = s.submit(
        _stepper(steps, "sd", STEP_S),
        spec=JobSpec(kind="sd", lane=Lane.BACKGROUND, resources=cpu, preemptible=True),
    )
    await _until(lambda: len(steps) >= 1)
    first = s.submit(_voice, spec=JobSpec(kind="asr", lane=Lane.REALTIME, resources=cpu))
    await first.result()
    await _until(lambda: s.job(draw.id)["status"] == "running")  # type: ignore[index]
    second = s.submit(_voice, spec=JobSpec(kind="llm", lane=Lane.REALTIME, resources=cpu))
    await second.result()
    waited = _wait_s(s, second.id)
    draw.cancel()
    assert waited <= STEP_S + SLACK_S, f"waited {waited:.3f} s for a {STEP_S} s step"


async def test_what_a_chat_yields_to_realtime_is_not_taken_by_a_promoted_drawing(
    make_scheduler: MakeScheduler,
) -> None:
    """A paused drawing whose lane reached the starvation bound, a chat running: a REALTIME
    job preempts the chat and gets the slot when the chat pauses; the promoted drawing
    resumes after it (lower lanes still make progress)."""
    s = await make_scheduler(resources={"cpu": 1}, starvation_bound=1)
    steps: list[str] = []
    cpu = {"cpu": 1}
    draw = s.submit(
        _stepper(steps, "sd", STEP_S, n=3),
        spec=JobSpec(kind="sd", lane=Lane.BACKGROUND, resources=cpu, preemptible=True),
    )
    await _until(lambda: steps.count("sd") >= 1)
    chat = s.submit(
        _stepper(steps, "chat", 0.01, n=60),
        spec=JobSpec(kind="llm", lane=Lane.INTERACTIVE, resources=cpu, preemptible=True),
    )
    await _until(lambda: steps.count("chat") >= 3)  # the drawing is paused, its lane starved
    voice = s.submit(_voice, spec=JobSpec(kind="asr", lane=Lane.REALTIME, resources=cpu))
    started = await voice.result()
    waited = _wait_s(s, voice.id)
    sd_steps_before = steps.count("sd")
    assert waited <= 0.01 + SLACK_S, f"waited {waited:.3f} s (a chat step is 0.01 s)"
    await asyncio.wait_for(draw.result(), 5.0)  # the promoted drawing still finishes
    assert sd_steps_before == 1 and time.monotonic() >= started
    chat.cancel()
