"""Every /admin endpoint through httpx against the app, with the real scheduler underneath."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.admin.routes import TRACE_CHUNK, _jsonl_chunks
from core.errors import JobCancelled
from core.models.manager import ModelManager
from core.models.settings import ModelsSettings
from core.scheduler import JobSpec, JobStatus, Lane, Scheduler
from core.services import Services
from tests.admin.conftest import AUTH, TOKEN, Blocker, FakeModels, double, make_app, run_some
from tests.models_llm.conftest import FakeBackend


async def test_stats_count_real_jobs(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
    await run_some(scheduler)
    s = (await client.get("/admin/stats", headers=AUTH)).json()
    demo = s["kinds"]["interactive"]["demo"]
    assert (demo["submitted"], demo["completed"], demo["failed"]) == (3, 3, 0)
    assert set(demo["wait_ms"]) >= {"p50", "p95", "p99"}
    assert set(demo["run_ms"]) >= {"p50", "p95", "p99"}
    assert s["kinds"]["background"]["broken"]["failed"] == 1
    assert s["lanes"]["interactive"]["completed"] == 3
    assert s["lanes"]["realtime"]["queued"] == 0
    assert s["resources"] == {
        "cpu": {"used": 0, "budget": 2},
        "vram:0": {"used": 0, "budget": 8192},
    }
    assert s["running"] == []
    assert s["uptime_s"] >= 0
    assert "p99" in s["loop_lag_ms"]


async def test_stats_show_running_job_and_resources(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    blocker = Blocker()
    spec = JobSpec(kind="sd", lane=Lane.BACKGROUND, resources={"vram:0": 2048}, label="draw: cat")
    handle = scheduler.submit(blocker, spec=spec)
    await blocker.started.wait()
    s = (await client.get("/admin/stats", headers=AUTH)).json()
    assert s["resources"]["vram:0"] == {"used": 2048, "budget": 8192}
    assert [j["id"] for j in s["running"]] == [handle.id]
    assert s["running"][0]["label"] == "draw: cat"
    assert s["lanes"]["background"]["running"] == 1
    blocker.release.set()
    assert await handle == "released"


async def test_tasks_filters_and_pagination(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    ids = await run_some(scheduler)

    async def get(**params: str | int) -> list[dict[str, Any]]:
        r = await client.get("/admin/tasks", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]

    everything = await get()
    assert len(everything) == 4
    assert [t["id"] for t in everything] == sorted((t["id"] for t in everything), reverse=True)
    assert [t["id"] for t in await get(status="failed")] == [ids["failed_id"]]
    assert {t["kind"] for t in await get(lane="interactive")} == {"demo"}
    assert len(await get(kind="demo")) == 3
    assert len(await get(owner="qq:group:0")) == 2
    assert len(await get(kind="demo", owner="qq:group:1")) == 1
    r = await client.get("/admin/tasks", params={"limit": 3}, headers=AUTH)
    assert r.json()["next_offset"] == 3
    r = await client.get("/admin/tasks", params={"limit": 3, "offset": 3}, headers=AUTH)
    assert r.json()["next_offset"] is None and len(r.json()["items"]) == 1
    page1, page2 = await get(limit=2), await get(limit=2, offset=2)
    assert [t["id"] for t in page1 + page2] == [t["id"] for t in everything]
    assert await get(offset=10) == []
    for bad in ({"status": "nope"}, {"lane": "urgent"}, {"limit": 0}, {"offset": -1}):
        assert (await client.get("/admin/tasks", params=bad, headers=AUTH)).status_code == 422


async def test_task_by_id(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
    ids = await run_some(scheduler)
    r = await client.get(f"/admin/tasks/{ids['failed_id']}", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["status"] == "failed" and r.json()["kind"] == "broken"
    assert "boom" in r.json()["error"]
    assert (await client.get("/admin/tasks/999999", headers=AUTH)).status_code == 404


async def test_delete_cancels_a_running_job(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    blocker = Blocker()
    handle = scheduler.submit(blocker, spec=JobSpec(kind="llm", owner="qq:group:7"))
    await blocker.started.wait()
    r = await client.delete(f"/admin/tasks/{handle.id}", headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"id": handle.id, "cancelled": True, "status": "cancelled"}
    with pytest.raises(JobCancelled):
        await handle
    # the job's own code stopped too, not just its future
    await asyncio.wait_for(blocker.stopped.wait(), 5)
    assert handle.status is JobStatus.CANCELLED
    assert scheduler.stats()["kinds"]["interactive"]["llm"]["cancelled"] == 1
    again = await client.delete(f"/admin/tasks/{handle.id}", headers=AUTH)
    assert again.status_code == 409 and again.json()["cancelled"] is False
    assert (await client.delete("/admin/tasks/424242", headers=AUTH)).status_code == 404


async def test_delete_cancels_a_queued_job(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
    hog = Blocker()
    first = scheduler.submit(hog, spec=JobSpec(kind="sd", resources={"vram:0": 8192}))
    await hog.started.wait()
    queued = scheduler.submit(hog, spec=JobSpec(kind="sd", resources={"vram:0": 8192}))
    assert (await client.get(f"/admin/tasks/{queued.id}", headers=AUTH)).json()[
        "status"
    ] == "queued"
    r = await client.delete(f"/admin/tasks/{queued.id}", headers=AUTH)
    assert r.json()["cancelled"] is True
    with pytest.raises(JobCancelled):
        await queued
    hog.release.set()
    assert await first == "released"


async def test_vram_shows_the_residency_plan(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/vram", headers=AUTH)
    assert r.status_code == 200 and r.json()["cuda:0"]["weights_mb"] == {"sd": 2048}
    assert (await client.get("/admin/vram")).status_code == 401


async def test_models_list_load_unload(client: httpx.AsyncClient, services: Services) -> None:
    r = await client.get("/admin/models", headers=AUTH)
    assert {m["name"]: m["loaded"] for m in r.json()} == {"llm": False, "sd": False}
    r = await client.post("/admin/models/llm/load", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"name": "llm", "action": "load", "changed": True}
    assert services.models.last_owner == "admin"  # type: ignore[attr-defined]
    loaded = {
        m["name"]: m["loaded"] for m in (await client.get("/admin/models", headers=AUTH)).json()
    }
    assert loaded == {"llm": True, "sd": False}
    # the load ran as a real scheduler job
    assert services.scheduler.stats()["kinds"]["interactive"]["load:llm"]["completed"] == 1
    r = await client.post("/admin/models/llm/unload", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"name": "llm", "action": "unload", "changed": True}
    r = await client.post("/admin/models/llm/unload", headers=AUTH)  # nothing left to unload
    assert r.status_code == 200 and r.json()["changed"] is False
    assert not any(m["loaded"] for m in (await client.get("/admin/models", headers=AUTH)).json())


async def test_model_errors_have_clear_bodies(client: httpx.AsyncClient) -> None:
    for action in ("load", "unload"):
        r = await client.post(f"/admin/models/nope/{action}", headers=AUTH)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_configured"
        assert "nope" in r.json()["error"]["message"]
    r = await client.post("/admin/models/sd/load", headers=AUTH)
    assert r.status_code == 500
    assert r.json()["error"] == {
        "code": "model_load_failed",
        "message": "weights file /models/sd/unet.safetensors is corrupt",
        "retryable": False,
    }


async def test_devices_and_bots(client: httpx.AsyncClient) -> None:
    devices = (await client.get("/admin/devices", headers=AUTH)).json()
    assert devices == [
        {"device_id": "aa:bb:cc:dd:ee:ff", "state": "listening", "protocol_version": 3}
    ]
    bots = (await client.get("/admin/bots", headers=AUTH)).json()
    assert bots == [{"self_id": "10001", "adapter": "OneBot V11"}]


async def test_trace_is_json_lines(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
    ids = await run_some(scheduler)
    r = await client.get("/admin/trace", headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert r.text == scheduler.trace_jsonl()  # the scheduler's own format, oldest first
    events = [json.loads(line) for line in r.text.splitlines()]
    assert len(events) >= 12  # scheduled, started, finished for each of 4 jobs
    failed = [e for e in events if e["job_id"] == ids["failed_id"]]
    assert [e["event"] for e in failed] == ["scheduled", "started", "failed"]
    assert failed[0]["lane"] == "background" and failed[0]["kind"] == "broken"
    last = await client.get("/admin/trace", params={"limit": 3}, headers=AUTH)
    assert last.text == scheduler.trace_jsonl(3) and len(last.text.splitlines()) == 3


async def test_long_trace_streams_in_slices(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    for i in range(300):  # 600+ events: more than one slice
        await scheduler.submit(double, i, spec=JobSpec(kind="demo"))
    events = scheduler.trace()
    chunks = [chunk async for chunk in _jsonl_chunks(events)]
    assert len(chunks) == -(-len(events) // TRACE_CHUNK) >= 3  # the loop runs between slices
    assert "".join(chunks) == scheduler.trace_jsonl()
    r = await client.get("/admin/trace", params={"limit": 100_000}, headers=AUTH)
    assert r.text == scheduler.trace_jsonl()


async def test_health_and_readiness(client: httpx.AsyncClient, scheduler: Scheduler) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["scheduler_accepting"] is True
    await scheduler.stop()
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "not ready"
    assert (await client.get("/healthz")).status_code == 200  # alive, just not ready


async def test_openapi_documents_admin_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = [
        "/admin/stats",
        "/admin/tasks",
        "/admin/tasks/{job_id}",
        "/admin/models",
        "/admin/trace",
        "/admin/models/{name}/load",
        "/healthz",
        "/readyz",
        "/metrics",
    ]
    for path in paths:
        assert path in spec["paths"], path
    assert "delete" in spec["paths"]["/admin/tasks/{job_id}"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_admin_serves_its_own_openapi(client: httpx.AsyncClient) -> None:
    """NoneBot's FastAPI app has /docs off by default: /admin/docs works regardless."""
    spec = (await client.get("/admin/openapi.json")).json()
    assert "/admin/tasks/{job_id}" in spec["paths"] and "/metrics" in spec["paths"]
    assert spec["paths"]["/admin/stats"]["get"]["security"] == [{"HTTPBearer": []}]
    docs = await client.get("/admin/docs")
    assert docs.status_code == 200 and "/admin/openapi.json" in docs.text


async def test_dashboard_page_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<canvas" in r.text and "/admin/stats" in r.text and "Bearer" in r.text
    assert TOKEN not in r.text  # the page carries no secret; the browser supplies it


async def _ready_after_warm_up(
    services: Services, *, fail: bool
) -> tuple[list[httpx.Response], FakeBackend]:
    """/readyz before the warm start, while it loads (0.3 s) and once it has finished."""
    llm = FakeBackend(load_delay_s=0.3, fail_loads=1 if fail else 0)
    services.models = ModelManager(
        ModelsSettings(warm_start_models=["vad", "llm"]),
        services.scheduler,
        Path("unused"),
        factories={"llm": lambda _s, _c: llm, "vad": lambda _s, _c: FakeBackend()},
    )
    seen = []
    transport = httpx.ASGITransport(app=make_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        seen.append(await client.get("/readyz"))
        services.models.start_warm_up()
        await asyncio.sleep(0.1)
        seen.append(await client.get("/readyz"))
        for _ in range(50):
            await asyncio.sleep(0.1)
            if services.models.warm_up_status()["seconds"] is not None:
                break
        seen.append(await client.get("/readyz"))
    await services.models.close()
    return seen, llm


async def test_readiness_waits_for_the_warm_start_models(services: Services) -> None:
    (before, loading, after), llm = await _ready_after_warm_up(services, fail=False)
    assert before.status_code == 503 and before.json()["models"]["ready"] is False
    assert loading.status_code == 503 and "llm" in loading.json()["models"]["loading"]
    assert after.status_code == 200 and after.json()["status"] == "ready"
    assert sorted(after.json()["models"]["loaded"]) == ["llm", "vad"] and llm.loads == 1


async def test_readiness_reports_a_warm_start_model_that_failed(services: Services) -> None:
    (_, _, after), _ = await _ready_after_warm_up(services, fail=True)
    assert after.status_code == 503 and after.json()["scheduler_accepting"] is True
    assert after.json()["failed_models"] == ["llm"]  # the name; the detail is for admins
    assert "corrupt weights" not in after.text
    assert after.json()["models"]["loaded"] == ["vad"]


async def test_readiness_without_warm_start_needs_no_model(services: Services) -> None:
    services.models = ModelManager(
        ModelsSettings(warm_start=False), services.scheduler, Path("unused")
    )
    services.models.start_warm_up()
    transport = httpx.ASGITransport(app=make_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["models"]["warm_start"] is False
    assert not any(row["loaded"] for row in services.models.snapshot())
    await services.models.close()


async def test_readiness_reflects_a_failed_default_model(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Issue #16 item 13: /readyz stayed 200 while the LLM could not load. Now 503 with the
    model's name, and no path (the detail is in /admin/models for admins)."""
    models = services.models
    assert isinstance(models, FakeModels)
    models.entries["llm"]["load_error"] = "llm: load failed: /models/llm/x.gguf: bad magic"
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["failed_models"] == ["llm"]
    assert "/models" not in r.text
    detail = (await client.get("/admin/models", headers=AUTH)).json()
    assert any(e.get("load_error") for e in detail)
    models.entries["sd"]["load_error"] = "optional model"
    models.entries["llm"]["load_error"] = None
    assert (await client.get("/readyz")).status_code == 200  # an optional model does not count


async def test_readiness_says_why_without_paths_and_health_has_the_detail(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Issue #16 item 14: a model that cannot be assembled on a full data dir; /readyz
    names the reason as a code, /admin/health (admins) the whole message."""
    models = services.models
    assert isinstance(models, FakeModels)
    message = "no room to assemble the embedded chat model in /data/models: 3 MB free"
    models.entries["llm"]["load_error"] = message
    models.entries["llm"]["load_error_code"] = "disk_full"
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["reasons"] == {"llm": "disk_full"}
    assert "/data" not in r.text
    health = (await client.get("/admin/health", headers=AUTH)).json()
    assert health["status"] == "degraded" and health["model_errors"] == {"llm": message}
    assert (await client.get("/admin/health")).status_code == 401
    models.entries["llm"]["load_error"] = None
    assert (await client.get("/admin/health", headers=AUTH)).json()["status"] == "ok"
    models.entries["llm"]["storage_error"] = "no room to assemble whisper-base: 0 MB free"
    health = (await client.get("/admin/health", headers=AUTH)).json()
    assert health["status"] == "degraded"  # loaded from memory, not the cache: admins see why
    assert health["model_storage_errors"] == {"llm": models.entries["llm"]["storage_error"]}
