"""The dashboard in headless Chromium against a real uvicorn server: it renders live numbers."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uvicorn

from core.scheduler import JobSpec, Lane, Scheduler
from core.services import Services
from tests.admin.conftest import TOKEN, Blocker, make_app, run_some

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BROWSER_TIMEOUT_S = 90.0

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")


class _Ids(HTMLParser):
    """Text content of every element with an id, plus the <body> attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.body: dict[str, str | None] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "body":
            self.body = found
        ident = found.get("id")
        self._open.append(ident)
        if ident:
            self.text[ident] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.text[ident] += data


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


async def chromium(tmp_path: Path, url: str, *extra: str) -> str:
    assert CHROMIUM is not None
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=4000", *extra, url]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), BROWSER_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out.decode()


async def test_dashboard_shows_live_numbers(
    scheduler: Scheduler, services: Services, tmp_path: Path
) -> None:
    await run_some(scheduler)
    blocker = Blocker()
    spec = JobSpec(kind="sd", lane=Lane.BACKGROUND, resources={"vram:0": 2048}, label="draw: a cat")
    handle = scheduler.submit(blocker, spec=spec)
    await blocker.started.wait()
    try:
        async with serve(services) as base:
            url = f"{base}/admin/ui?token={TOKEN}"
            dom = await chromium(tmp_path, url, "--dump-dom")
            stats = scheduler.stats()  # nothing changes while the blocker runs
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            shot.unlink(missing_ok=True)
            await chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1400,1000")
    finally:
        blocker.release.set()
        await handle

    page = _Ids()
    page.feed(dom)
    ids = page.text
    assert ids["error"] == ""
    assert int(page.body["data-ticks"] or 0) >= 1  # at least one full poll rendered
    for lane, row in stats["lanes"].items():
        for field in ("submitted", "completed", "failed", "queued"):
            assert ids[f"lane-{lane}-{field}"] == str(row[field]), (lane, field)
    assert ids["lane-interactive-completed"] == "3"
    assert ids["lane-background-failed"] == "1"
    assert ids["lane-background-running"] == "1"
    assert ids["running-count"] == "1"
    assert "draw: a cat" in ids[f"job-{handle.id}"]
    assert ids["res-vram:0"] == "2048 / 8192"
    assert ids["state"] == "running"
    assert float(ids["uptime"]) >= 0
    assert "listening" in ids["devices"] and "10001" in ids["bots"]
    assert "llm" in ids["models"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
