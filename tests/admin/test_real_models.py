"""The models endpoints against the REAL ModelManager (embedded Silero VAD, unconfigured VL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.models.manager import ModelManager
from core.scheduler import Scheduler
from core.services import Services
from tests.admin.conftest import AUTH, FakeDirectory, make_app, make_services


@pytest.fixture
async def real_client(scheduler: Scheduler, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    base = make_services(scheduler)
    models = ModelManager(base.settings.models, scheduler, tmp_path / "models")
    services = Services(
        settings=base.settings,
        scheduler=scheduler,
        models=models,
        inference=base.inference,
        devices=FakeDirectory([]),
        bots=FakeDirectory([]),
    )
    transport = httpx.ASGITransport(app=make_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as c:
            yield c
    finally:
        await models.close()


async def loaded(client: httpx.AsyncClient) -> dict[str, bool]:
    r = await client.get("/admin/models", headers=AUTH)
    return {m["name"]: m["loaded"] for m in r.json()}


async def test_load_and_unload_a_real_model(
    real_client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    assert set(await loaded(real_client)) >= {"vad", "asr", "llm", "tts", "vl", "sd"}
    r = await real_client.post("/admin/models/vad/load", headers=AUTH)
    assert r.status_code == 200, r.text
    assert (await loaded(real_client))["vad"] is True
    load_jobs = scheduler.jobs(kind="load:vad")
    assert [(j["status"], j["owner"]) for j in load_jobs] == [("completed", "admin")]
    r = await real_client.post("/admin/models/vad/unload", headers=AUTH)
    assert r.status_code == 200 and r.json()["changed"] is True
    assert (await loaded(real_client))["vad"] is False


async def test_real_load_failure_has_a_clear_body(real_client: httpx.AsyncClient) -> None:
    r = await real_client.post("/admin/models/vl/load", headers=AUTH)
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "model_not_configured" and "model_dir" in error["message"]
    r = await real_client.post("/admin/models/nope/load", headers=AUTH)
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
