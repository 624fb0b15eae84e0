"""The dashboard's workers section in headless Chromium: the Ray pool's boxes (alive and
lost), replicas with state, running jobs and last error, the degraded reason, Chinese labels,
and still no horizontal scrolling at 1280 px."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from core.scheduler import Scheduler
from core.workers.base import WorkerState
from core.workers.ray_view import NodeView
from tests.admin.cdp import Browser, launch
from tests.admin.conftest import TOKEN, make_services
from tests.admin.test_dashboard_browser import (
    ARTIFACTS,
    CHROMIUM,
    WIDTH_PX,
    log_in,
    serve,
    text,
)
from tests.ray.test_view import FakeReplica, pool_with, ray_node

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    assert CHROMIUM is not None
    started = await launch(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield started
    finally:
        await started.close()


async def test_the_workers_section_shows_the_ray_pool_in_chinese(
    scheduler: Scheduler, browser: Browser
) -> None:
    alive = FakeReplica("xiaoyou-chat-0", node_id="h")
    dead = FakeReplica("xiaoyou-chat-1", node_id="a", state=WorkerState.DEAD)
    dead.last_error, dead.last_error_at = "died during a call: ActorDiedError", time.time() - 65
    pool = pool_with(scheduler, [alive, dead])
    pool._groups["llm"].jobs[alive.name].append(42)
    pool._boxes.update(
        [NodeView.from_ray(ray_node("h", "head")), NodeView.from_ray(ray_node("a", "gpu1"))]
    )
    pool._boxes.update(
        [
            NodeView.from_ray(ray_node("h", "head")),
            NodeView.from_ray(ray_node("a", "gpu1", alive=False)),
        ]
    )
    services = make_services(scheduler)
    services.cluster = pool
    async with serve(services) as base, browser.new_page(WIDTH_PX, 1400) as page:
        await page.goto(f"{base}/admin/ui")
        await log_in(page, TOKEN)
        await page.wait_for("Number(document.body.dataset.ticks || 0) >= 1")
        hidden = await page.eval("document.getElementById('workers-section').hidden")
        problems = await text(page, "ray-problems")
        nodes = await text(page, "ray-nodes")
        replicas = await text(page, "ray-replicas")
        lost = await page.eval("document.querySelector('[data-box=gpu1]').dataset.alive")
        widths = await page.eval(
            "({doc: document.documentElement.scrollWidth,"
            " overflowing: [...document.querySelectorAll('section')]"
            ".filter(s => s.scrollWidth > s.clientWidth + 1)"
            ".map(s => s.querySelector('h2').textContent)})"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(ARTIFACTS / "dashboard_workers.png")
    assert hidden is False
    assert problems.startswith("Ray 集群降级：") and "'gpu1' lost" in problems, problems
    assert "节点" in nodes and "在线" in nodes and "已失联" in nodes and lost == "false"
    assert "vram_mb 8000" in nodes and "xiaoyou-chat-0" in nodes
    assert "运行中" in replicas and "已停止响应" in replicas, replicas
    assert "#42" in replicas and "died during a call: ActorDiedError" in replicas
    assert "分" in replicas and "前" in replicas  # the error's age, readable
    assert widths["doc"] <= WIDTH_PX and widths["overflowing"] == [], widths


async def test_the_workers_section_is_hidden_in_single_box_mode(
    scheduler: Scheduler, browser: Browser
) -> None:
    async with serve(make_services(scheduler)) as base, browser.new_page(WIDTH_PX, 900) as page:
        await page.goto(f"{base}/admin/ui")
        await log_in(page, TOKEN)
        await page.wait_for("Number(document.body.dataset.ticks || 0) >= 1")
        assert await page.eval("document.getElementById('workers-section').hidden") is True
