"""A small Chrome DevTools Protocol driver for headless Chromium: enough to open a page in a
fresh browser context, type into it, press keys, read values and take screenshots.

One browser per test module (:func:`launch`), one isolated context and tab per test
(:meth:`Browser.new_page`), so ``sessionStorage``/``localStorage`` never leak between tests.
Localhost only: the browser's debugging port is bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

LAUNCH_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0


class CdpError(RuntimeError):
    pass


@dataclass
class Browser:
    ws: ClientConnection
    proc: asyncio.subprocess.Process
    _next_id: int = 0
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    events: list[tuple[str | None, str, dict[str, Any]]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="cdp-reader")

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                future = self._pending.pop(msg["id"], None)
                if future is not None and not future.done():
                    future.set_result(msg)
            else:
                self.events.append((msg.get("sessionId"), msg["method"], msg.get("params", {})))

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(future, CALL_TIMEOUT_S)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    @contextlib.asynccontextmanager
    async def new_page(self, width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
        context = (await self.call("Target.createBrowserContext"))["browserContextId"]
        target = (
            await self.call("Target.createTarget", url="about:blank", browserContextId=context)
        )["targetId"]
        session = (await self.call("Target.attachToTarget", targetId=target, flatten=True))[
            "sessionId"
        ]
        page = Page(self, session)
        try:
            for domain in ("Page.enable", "Runtime.enable", "Network.enable"):
                await page.call(domain)
            await page.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield page
        finally:
            await self.call("Target.closeTarget", targetId=target)
            await self.call("Target.disposeBrowserContext", browserContextId=context)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.call("Browser.close")
        await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Page:
    browser: Browser
    session: str

    async def call(self, method: str, **params: Any) -> Any:
        return await self.browser.call(method, self.session, **params)

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def eval(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still falsy after {timeout_s} s: {expression}")
            await asyncio.sleep(0.1)

    async def type_text(self, selector: str, text: str) -> None:
        await self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.call("Input.insertText", text=text)

    async def press_enter(self) -> None:
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **key)

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        box = await self.eval(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.call(
                "Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                clickCount=1,
            )  # fmt: skip

    def requests(self) -> list[dict[str, Any]]:
        """Every request this page sent (Network.requestWillBeSent), in order."""
        return [
            params["request"]
            for session, method, params in self.browser.events
            if session == self.session and method == "Network.requestWillBeSent"
        ]

    async def screenshot(self, path: Path) -> None:
        """The whole page at the emulated width."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = await self.call(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


async def launch(chromium: str, profile: Path) -> Browser:
    """Start headless Chromium with its debugging port on loopback and connect to it."""
    port_file = profile / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
        if proc.returncode is not None or time.monotonic() > deadline:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise CdpError(f"chromium did not open its debugging port (rc {proc.returncode})")
        await asyncio.sleep(0.1)
    port, path = port_file.read_text().splitlines()[:2]
    ws = await connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10)
    browser = Browser(ws, proc)
    browser.start_reading()
    return browser
