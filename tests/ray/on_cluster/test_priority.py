"""Priority on a full cluster: the scheduler, not Ray, decides which job runs next."""

from __future__ import annotations

import asyncio

from core.scheduler import JobStatus, Lane
from tests.ray.on_cluster.conftest import MakePool
from tests.ray.on_cluster.helpers import submit_generate


async def test_a_realtime_job_overtakes_queued_background_work_on_a_full_cluster(
    make_pool: MakePool,
) -> None:
    """Two replicas busy with drawings, three more drawings queued: a voice job submitted last
    runs on the first replica that frees up, before every queued drawing."""
    pool, scheduler = await make_pool([{"name": "ot-gen", "model": "tts", "replicas": 2}])
    started: list[str] = []
    words = ["x"] * 8
    busy = [
        submit_generate(
            scheduler, pool, "tts", words, 0.1, lane=Lane.BACKGROUND, owner=f"qq:{i}",
            started=started, tag=f"bg{i}",
        )
        for i in range(2)
    ]  # fmt: skip
    queued = [
        submit_generate(
            scheduler, pool, "tts", words, 0.02, lane=Lane.BACKGROUND, owner=f"qq:{i}",
            started=started, tag=f"queued{i}",
        )
        for i in range(3)
    ]  # fmt: skip
    await asyncio.sleep(0.2)
    voice = submit_generate(
        scheduler, pool, "tts", ["你", "好"], 0.02, lane=Lane.REALTIME, owner="device:1",
        started=started, tag="voice",
    )  # fmt: skip
    await voice.result()
    await asyncio.gather(*(h.result() for h in busy + queued))
    assert started[:3] == ["bg0", "bg1", "voice"], started
    nodes = {(await h.result()).split(" ")[0] for h in busy}
    assert nodes <= {"head", "gpu1"}


async def test_a_realtime_job_preempts_a_drawing_on_the_same_box_at_its_next_step(
    make_pool: MakePool,
) -> None:
    """Two models pinned to one box with one compute slot: a long BACKGROUND drawing pauses at
    its next step (its actor waits there, keeping its model), the REALTIME chat runs on the
    box, then the drawing resumes and finishes with every step in order."""
    pool, scheduler = await make_pool(
        [
            {"name": "pre-sd", "model": "sd", "node": "gpu1"},
            {"name": "pre-llm", "model": "llm", "node": "gpu1"},
        ],
        nodes={"gpu1": {"slots": 1}},
    )
    drawing = submit_generate(
        scheduler, pool, "sd", [str(i) for i in range(30)], 0.05, lane=Lane.BACKGROUND,
        owner="qq:1", preemptible=True,
    )  # fmt: skip
    pieces: list[str] = []
    drawing_started = asyncio.Event()

    async def read() -> None:
        async for piece in drawing.stream():
            pieces.append(piece)
            if len(pieces) == 3:
                drawing_started.set()

    reader = asyncio.get_running_loop().create_task(read(), name="read-drawing")
    await drawing_started.wait()
    loop = asyncio.get_running_loop()
    submitted = loop.time()
    chat = submit_generate(
        scheduler, pool, "llm", ["你", "好", "呀"], 0.02, lane=Lane.REALTIME, owner="device:1",
        preemptible=True,
    )  # fmt: skip
    assert (await chat.result()).startswith("gpu1 ")
    chat_s = loop.time() - submitted
    assert drawing.status is not JobStatus.COMPLETED  # still paused or resumed, not done
    await drawing.result()
    await reader
    assert pieces == [str(i) for i in range(30)]
    assert chat_s < 1.0  # one drawing step (0.05 s) + the chat's 3 steps + Ray round trips
    yielded = [e for e in scheduler.trace() if e.event == "yielded"]
    assert len(yielded) >= 1


async def _running_on(pool: object, job_id: int) -> str:
    for _ in range(200):
        for model in pool.snapshot()["models"]:  # type: ignore[attr-defined]
            for row in model["replicas"]:
                if job_id in row["running_jobs"]:
                    return str(row["worker"])
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} never ran on a replica")


async def test_a_realtime_job_takes_the_free_replica_instead_of_waiting_for_the_busy_one(
    make_pool: MakePool,
) -> None:
    """Two replicas, one busy with a 2 s BACKGROUND job: a REALTIME job on the same model
    starts at once on the other replica (it does not wait for the running call)."""
    pool, scheduler = await make_pool([{"name": "free-gen", "model": "llm", "replicas": 2}])
    a, b = pool.replicas("llm")
    background = submit_generate(  # 20 pieces: within the stream buffer nobody reads
        scheduler, pool, "llm", ["x"] * 20, 0.1, lane=Lane.BACKGROUND, owner="qq:1",
        preemptible=True,
    )  # fmt: skip
    busy = await _running_on(pool, background.id)
    free = b if busy == a.name else a
    loop = asyncio.get_running_loop()
    submitted = loop.time()
    voice = submit_generate(
        scheduler, pool, "llm", ["你", "好"], 0.02, lane=Lane.REALTIME, owner="device:1",
        preemptible=True,
    )  # fmt: skip
    async with asyncio.timeout(30):
        assert (await voice.result()).endswith(f" {free.pid}")
        assert loop.time() - submitted < 1.0  # the background job still has ~1.5 s to go
        assert background.status is JobStatus.RUNNING
        await background.result()


async def test_background_replicas_keep_a_replica_free_for_voice_under_a_background_flood(
    make_pool: MakePool,
) -> None:
    """``background_replicas = 1`` of 2: four BACKGROUND jobs run one at a time on one
    replica, and a REALTIME job submitted behind them starts at once on the other."""
    pool, scheduler = await make_pool(
        [{"name": "res-gen", "model": "llm", "replicas": 2, "background_replicas": 1}]
    )
    started: list[str] = []
    flood = [
        submit_generate(
            scheduler, pool, "llm", ["x"] * 10, 0.05, lane=Lane.BACKGROUND, owner=f"qq:{i}",
            started=started, tag=f"bg{i}",
        )
        for i in range(4)
    ]  # fmt: skip
    await asyncio.sleep(0.3)
    running = [h for h in flood if h.status is JobStatus.RUNNING]
    assert len(running) == 1, [h.status for h in flood]  # the other replica is kept free
    loop = asyncio.get_running_loop()
    submitted = loop.time()
    voice = submit_generate(
        scheduler, pool, "llm", ["你", "好"], 0.02, lane=Lane.REALTIME, owner="device:1",
        started=started, tag="voice",
    )  # fmt: skip
    async with asyncio.timeout(30):
        await voice.result()
        assert loop.time() - submitted < 0.5  # no background job ahead of it on its replica
        assert started[:2] == ["bg0", "voice"], started
        await asyncio.gather(*(h.result() for h in flood))
