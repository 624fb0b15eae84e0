"""The dashboard in headless Chromium against a real uvicorn server, driven over the DevTools
protocol: log in through the form, live numbers, Chinese labels, no token in any URL, a
1280 px window without horizontal scrolling, the no-token and wrong-token screens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from core.scheduler import JobSpec, Lane, Scheduler
from core.services import Services
from tests.admin.cdp import Browser, Page, launch
from tests.admin.conftest import TOKEN, Blocker, make_app, make_services, run_some

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WIDTH_PX = 1280

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")


@contextlib.asynccontextmanager
async def serve(services: Services) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(services), log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="test-uvicorn")
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    assert CHROMIUM is not None
    started = await launch(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield started
    finally:
        await started.close()


async def text(page: Page, ident: str) -> str:
    return str(await page.eval(f"document.getElementById({json.dumps(ident)}).textContent"))


async def screen(page: Page) -> str:
    return str(await page.wait_for("document.body.dataset.screen"))


async def log_in(page: Page, token: str) -> None:
    await page.wait_for("document.body.dataset.screen === 'login'")
    await page.type_text("#token-input", token)
    await page.press_enter()


def tokens_in_urls(page: Page, token: str) -> list[str]:
    return [r["url"] for r in page.requests() if token in r["url"]]


async def test_form_login_live_numbers_chinese_labels_at_1280_px(
    scheduler: Scheduler, services: Services, browser: Browser
) -> None:
    await run_some(scheduler)
    now_s = time.time()
    device = services.devices.snapshot()[0]  # the test double's own dict
    device.update(connected_since=now_s - 125, remote="127.0.0.1:50000")
    services.bots.snapshot()[0]["connected_since"] = now_s - 3 * 3600 - 60
    llm = services.models.entries["llm"]  # type: ignore[attr-defined]
    llm.update(loaded=True, last_used_ts=now_s - 300, uses=4, load_s=1.25, measured_mb=480.5)
    blocker = Blocker()
    spec = JobSpec(kind="sd", lane=Lane.BACKGROUND, resources={"vram:0": 2048}, label="draw: a cat")
    handle = scheduler.submit(blocker, spec=spec)
    await blocker.started.wait()
    try:
        async with serve(services) as base, browser.new_page(WIDTH_PX, 900) as page:
            await page.goto(f"{base}/admin/ui")
            assert await screen(page) == "login"
            assert await page.eval("document.activeElement.id") == "token-input"
            await log_in(page, TOKEN)
            await page.wait_for("Number(document.body.dataset.ticks || 0) >= 2")
            stats = scheduler.stats()  # nothing changes while the blocker runs
            ids = {
                i: await text(page, i)
                for i in ("error", "running-count", "state", "uptime", "devices", "bots",
                          "models", f"job-{handle.id}", "res-vram:0", "lanes")
            }  # fmt: skip
            lane_cells = {
                f"lane-{lane}-{field}": await text(page, f"lane-{lane}-{field}")
                for lane in stats["lanes"]
                for field in ("submitted", "completed", "failed", "queued", "running")
            }
            headings = await page.eval(
                "[...document.querySelectorAll('h2')].map(h => h.textContent)"
            )
            page_lang = await page.eval("document.documentElement.lang")
            uptime_s = float(await page.eval("document.getElementById('uptime').dataset.seconds"))
            href = await page.eval("location.href")
            stored = await page.eval("sessionStorage.getItem('xiaoyou-token')")
            widths = await page.eval(
                "({inner: window.innerWidth, doc: document.documentElement.scrollWidth,"
                " overflowing: [...document.querySelectorAll('section')]"
                ".filter(s => s.scrollWidth > s.clientWidth + 1)"
                ".map(s => s.querySelector('h2').textContent)})"
            )
            requests = page.requests()
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            shot.unlink(missing_ok=True)
            await page.screenshot(shot)
    finally:
        blocker.release.set()
        await handle

    # live numbers
    assert ids["error"] == ""
    for lane, row in stats["lanes"].items():
        for field in ("submitted", "completed", "failed", "queued"):
            assert lane_cells[f"lane-{lane}-{field}"] == str(row[field]), (lane, field)
    assert lane_cells["lane-interactive-completed"] == "3"
    assert lane_cells["lane-background-failed"] == "1"
    assert lane_cells["lane-background-running"] == "1"
    assert ids["running-count"] == "1"
    assert "draw: a cat" in ids[f"job-{handle.id}"]
    assert ids["res-vram:0"] == "2048 / 8192"
    assert uptime_s >= 0 and ids["uptime"].endswith(("秒", "分", "小时", "天"))
    assert "10001" in ids["bots"] and "aa:bb:cc:dd:ee:ff" in ids["devices"]
    assert "llm" in ids["models"]
    # Chinese labels by default
    assert page_lang == "zh-CN"
    assert ids["state"] == "运行中"
    assert "聆听中" in ids["devices"] and "未加载" in ids["models"]
    # readable times: durations and "ago", not epoch seconds
    assert re.search(r"聆听中3(2 分 \d+ 秒)127", ids["devices"])  # state, protocol, since
    assert "3 小时 1 分" in ids["bots"]
    assert re.search(r"5 分 \d+ 秒前", ids["models"])
    assert "1.3 秒" in ids["models"] and "已加载" in ids["models"]
    assert str(int(now_s)) not in ids["devices"] + ids["bots"] + ids["models"]
    assert {"调度通道", "正在运行的任务", "模型", "设备", "QQ 机器人"} <= set(headings)
    assert "交互对话" in ids["lanes"] and "后台任务" in ids["lanes"]
    # the token travels as a bearer header only, never in a URL
    assert TOKEN not in href and "token" not in href
    assert stored == TOKEN
    assert tokens_in_urls(page, TOKEN) == []
    api_calls = [r for r in requests if "/admin/stats" in r["url"]]
    assert api_calls and all(
        r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in api_calls
    )
    # fits 1280 px: no horizontal scrolling of the page or inside a section
    assert widths["inner"] == WIDTH_PX
    assert widths["doc"] <= WIDTH_PX, widths
    assert widths["overflowing"] == [], widths
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000


async def test_language_switch_to_english_and_back(services: Services, browser: Browser) -> None:
    async with serve(services) as base, browser.new_page() as page:
        await page.goto(f"{base}/admin/ui")
        await log_in(page, TOKEN)
        await page.wait_for("Number(document.body.dataset.ticks || 0) >= 1")
        await page.click("#lang-switch")
        await page.wait_for("document.documentElement.lang === 'en'")
        headings = await page.eval("[...document.querySelectorAll('h2')].map(h => h.textContent)")
        state = await text(page, "state")
        switch = await text(page, "lang-switch")
        remembered = await page.eval("localStorage.getItem('xiaoyou-lang')")
        await page.click("#lang-switch")
        back = await page.wait_for("document.documentElement.lang === 'zh-CN' && "
                                   "document.querySelector('#dash h2').textContent")  # fmt: skip
    assert {"Lanes", "Running jobs", "Models", "Devices"} <= set(headings)
    assert state == "running" and switch == "中文" and remembered == "en"
    assert back == "调度通道"


async def test_wrong_token_asks_again(services: Services, browser: Browser) -> None:
    async with serve(services) as base, browser.new_page() as page:
        await page.goto(f"{base}/admin/ui")
        await log_in(page, "not-the-token")
        message = await page.wait_for("document.getElementById('login-error').textContent")
        current = await screen(page)
        stored = await page.eval("sessionStorage.getItem('xiaoyou-token')")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(ARTIFACTS / "dashboard-login.png")
    assert message == "令牌不正确，请重新输入。"
    assert current == "login" and stored is None


async def test_missing_admin_token_is_explained(scheduler: Scheduler, browser: Browser) -> None:
    """No token configured: how to set one, not a login form and not a bare "HTTP 503"."""
    services = make_services(scheduler, token=None)
    async with serve(services) as base, browser.new_page() as page:
        await page.goto(f"{base}/admin/ui")
        current = await screen(page)
        setup = await text(page, "setup")
        visible = await page.eval(
            "[...document.querySelectorAll('#setup, #login, #dash')]"
            ".filter(e => e.offsetParent !== null).map(e => e.id)"
        )
        error = await text(page, "error")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(ARTIFACTS / "dashboard-no-token.png")
    assert current == "setup" and visible == ["setup"]
    assert "没有设置管理令牌" in setup and "XIAOYOU_ADMIN__TOKEN" in setup
    assert "openssl rand -hex 32" in setup
    assert "503" not in error


async def test_token_in_the_url_is_not_used_and_leaves_the_address_bar(
    services: Services, browser: Browser
) -> None:
    async with serve(services) as base, browser.new_page() as page:
        await page.goto(f"{base}/admin/ui?token={TOKEN}")
        current = await screen(page)
        href = await page.eval("location.href")
        message = await text(page, "login-error")
        api_calls = [r["url"] for r in page.requests() if "/admin/stats" in r["url"]]
    assert current == "login"
    assert href == f"{base}/admin/ui"
    assert "网址里的令牌已被忽略" in message
    assert api_calls == []  # nothing was sent with it
