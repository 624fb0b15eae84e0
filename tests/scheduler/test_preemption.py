"""General step preemption (issue 14): what a paused job keeps, model resources defined at run
time, the pause hooks of blocking jobs, and the starvation bound of repeated preemption."""

from __future__ import annotations

import asyncio
import functools
import time

from core.scheduler import ExecMode, JobContext, JobSpec, JobStatus, Lane
from tests.polling import until

from .conftest import MakeScheduler
from .helpers import Gate


async def test_a_paused_job_keeps_its_model_slot_and_gives_the_cpu_back(
    make_scheduler: MakeScheduler,
) -> None:
    s = await make_scheduler(resources={"cpu": 1})
    s.define_resource("model:sd", 1)
    steps: list[int] = []

    async def draw(ctx: JobContext) -> str:
        for i in range(200):
            await ctx.checkpoint()
            steps.append(i)
            await asyncio.sleep(0.002)
        return "image"

    sd_spec = JobSpec(
        kind="sd",
        lane=Lane.BACKGROUND,
        owner="qq:1",
        resources={"cpu": 1, "model:sd": 1},
        preemptible=True,
        keep_on_yield=frozenset({"model:sd"}),
    )
    first = s.submit(draw, spec=sd_spec)
    await _until(lambda: len(steps) >= 2)
    gate = Gate()
    voice = s.submit(gate, spec=JobSpec(kind="asr", lane=Lane.REALTIME, resources={"cpu": 1}))
    await gate.started.wait()
    assert first.status is JobStatus.YIELDED
    second = s.submit(draw, spec=sd_spec)  # the pipeline is still the first job's: it waits
    await asyncio.sleep(0.02)
    assert second.status is JobStatus.QUEUED
    used = s.stats()["resources"]
    assert used["model:sd"]["used"] == 1 and used["cpu"]["used"] == 1
    first.cancel()  # stopped while paused: what it kept is released when its code returns
    gate.opened.set()
    await voice
    assert await second == "image"
    await asyncio.sleep(0.01)
    used = s.stats()["resources"]
    assert used["model:sd"]["used"] == 0 and used["cpu"]["used"] == 0


async def test_a_blocking_job_saves_its_state_before_a_pause_and_restores_it_after(
    make_scheduler: MakeScheduler,
) -> None:
    s = await make_scheduler(resources={"cpu": 1})
    s.define_resource("model:llm", 1)
    log: list[str] = []

    class Context:
        """The shared model object: whoever ran last owns its state."""

        owner = ""

        def save_state(self) -> object:
            log.append("save")
            return self.owner

        def restore_state(self, state: object) -> None:
            log.append("restore")
            self.owner = str(state)

    model = Context()

    def chat(ctx: JobContext, name: str, tokens: int) -> list[str]:
        model.owner = name
        out = []
        for i in range(tokens):
            ctx.checkpoint_blocking(model)
            assert model.owner == name, "the paused job's state was not restored"
            time.sleep(0.002)
            out.append(f"{name}{i}")
        return out

    needs = {"cpu": 1, "model:llm": 1}
    spec = JobSpec(kind="llm", mode=ExecMode.THREAD, resources=needs, preemptible=True)
    background = s.submit(chat, "bg", 100, spec=spec)
    await _until(lambda: s.stats()["resources"]["model:llm"]["used"] == 1)
    await asyncio.sleep(0.01)
    realtime = JobSpec(kind="llm", lane=Lane.REALTIME, mode=ExecMode.THREAD, resources=needs)
    assert await s.submit(chat, "rt", 3, spec=realtime) == ["rt0", "rt1", "rt2"]
    assert await background == [f"bg{i}" for i in range(100)]
    assert log[:2] == ["save", "restore"]


async def test_a_preempted_job_still_finishes_under_a_saturated_realtime_lane(
    make_scheduler: MakeScheduler,
) -> None:
    """Starvation bound: each resume lets the job run ``preempt_grace_steps`` steps before it
    pauses again, and lane promotion resumes it, so lower lanes always make progress."""
    s = await make_scheduler(resources={"cpu": 1}, starvation_bound=4, preempt_grace_steps=3)
    done = asyncio.Event()
    steps: list[int] = []

    async def chat(ctx: JobContext) -> int:
        for i in range(30):
            await ctx.checkpoint()
            steps.append(i)
            await asyncio.sleep(0.001)
        return len(steps)

    async def voice(ctx: JobContext) -> None:
        await asyncio.sleep(0.002)

    async def flood() -> None:
        while not done.is_set():
            handles = [
                s.submit(
                    voice,
                    spec=JobSpec(
                        kind="asr", lane=Lane.REALTIME, owner=f"d{i}", resources={"cpu": 1}
                    ),
                )
                for i in range(3)
            ]
            for handle in handles:
                await handle

    background = s.submit(
        chat,
        spec=JobSpec(kind="llm", lane=Lane.INTERACTIVE, resources={"cpu": 1}, preemptible=True),
    )
    await _until(lambda: bool(steps))
    flooder = asyncio.create_task(flood())
    try:
        assert await asyncio.wait_for(background.result(), 10.0) == 30
    finally:
        done.set()
        await flooder
    yields = s.job(background.id)["yields"]  # type: ignore[index]
    assert isinstance(yields, int) and yields >= 2  # it was preempted, repeatedly, and still ran


_until = functools.partial(until, timeout_s=5.0, poll_s=0.001)


async def test_frequent_vad_jobs_do_not_promote_a_chat_past_the_voice_job_it_yielded_to(
    make_scheduler: MakeScheduler,
) -> None:
    """Regression: resource-free REALTIME jobs (VAD, every few tens of ms per device) counted
    toward the starvation bound; the promoted chat lane then resumed the paused chat with the
    resources it had just given to a waiting voice job, again and again."""
    s = await make_scheduler(resources={"cpu": 1}, starvation_bound=4, preempt_grace_steps=0)
    steps: list[int] = []

    async def vad(ctx: JobContext) -> None:
        return None

    async def chat(ctx: JobContext) -> None:
        for i in range(1_000):
            await ctx.checkpoint()
            steps.append(i)
            for _ in range(5):  # the devices' VAD jobs keep coming while the chat generates
                s.submit(vad, spec=JobSpec(kind="vad", lane=Lane.REALTIME, owner="device:1"))
            await asyncio.sleep(0.001)

    cpu = {"cpu": 1}
    background = s.submit(
        chat, spec=JobSpec(kind="llm", lane=Lane.INTERACTIVE, resources=cpu, preemptible=True)
    )
    queued = s.submit(chat, spec=JobSpec(kind="llm", lane=Lane.INTERACTIVE, resources=cpu))
    await _until(lambda: len(steps) >= 3)
    voice = s.submit(_sleep_job, 0.01, spec=JobSpec(kind="asr", lane=Lane.REALTIME, resources=cpu))
    try:
        await asyncio.wait_for(voice.result(), 1.0)
    finally:
        background.cancel()
        queued.cancel()


async def _sleep_job(ctx: JobContext, seconds: float) -> None:
    await asyncio.sleep(seconds)
