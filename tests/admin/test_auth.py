"""The bearer-token guard: refused without / with a wrong token, 503 when no token is set."""

from __future__ import annotations

import httpx
import pytest

from core.scheduler import Scheduler
from tests.admin.conftest import AUTH, TOKEN, make_app, make_services

ADMIN_GETS = ["/admin/stats", "/admin/tasks", "/admin/tasks/1", "/admin/models", "/admin/devices",
              "/admin/bots", "/admin/trace"]  # fmt: skip


@pytest.mark.parametrize("path", ADMIN_GETS)
async def test_missing_token_is_refused(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer ",
        f"Basic {TOKEN}",
        TOKEN,
        f"Token {TOKEN}",
    ],
)
async def test_wrong_token_is_refused(client: httpx.AsyncClient, header: str) -> None:
    r = await client.get("/admin/stats", headers={"Authorization": header})
    assert r.status_code == 401


async def test_mutations_need_the_token_too(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/admin/tasks/1")).status_code == 401
    assert (await client.post("/admin/models/llm/load")).status_code == 401
    assert (await client.post("/admin/models/llm/unload")).status_code == 401


async def test_right_token_is_accepted(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/stats", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["state"] == "running"


@pytest.mark.parametrize("token", [None, ""])
async def test_no_configured_token_disables_admin(scheduler: Scheduler, token: str | None) -> None:
    app = make_app(make_services(scheduler, token=token))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for headers in ({}, {"Authorization": "Bearer "}, AUTH):
            r = await c.get("/admin/stats", headers=headers)
            assert r.status_code == 503
            assert "disabled" in r.json()["detail"]
        assert (await c.get("/healthz")).status_code == 200  # ops endpoints stay up


async def test_ops_endpoints_need_no_token(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/admin/ui"):
        assert (await client.get(path)).status_code == 200, path
