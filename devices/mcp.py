"""The server's half of device MCP: JSON-RPC 2.0 requests to the device's tool server.

The firmware runs an MCP *server* (``docs/mcp-protocol.md`` of the firmware): after a hello
that announces ``features.mcp`` the server sends ``initialize``, then ``tools/list`` until a page
comes back without ``nextCursor`` (the firmware pages at 8000 bytes; a board may register
dozens of tools). ``tools/call`` runs one tool; its answer is ``{content: [{type, text}],
isError}`` or a JSON-RPC ``error``. Requests and answers travel as ``{"type": "mcp", "payload":
...}`` on the device socket; answers are matched to requests by ``id``, each request waits at
most ``timeout_s``. Device notifications (no ``id``) are logged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ProtocolError

log = logging.getLogger(__name__)

MAX_TOOL_PAGES = 32  # a cursor that never ends (a buggy board) stops here
PROTOCOL_VERSION = "2024-11-05"


class McpError(ProtocolError):
    """The device answered an MCP request with an error, or not in time."""

    code = "mcp"


@dataclass(frozen=True, slots=True)
class McpTool:
    name: str
    description: str
    input_schema: dict[str, Any]

    def properties(self) -> dict[str, Any]:
        props = self.input_schema.get("properties")
        return props if isinstance(props, dict) else {}


SendPayload = Callable[[dict[str, Any]], Awaitable[bool]]


class McpClient:
    """One device's tool server, seen from here; ``tools`` once :meth:`start` has listed them."""

    def __init__(self, send: SendPayload, *, owner: str, timeout_s: float = 10.0) -> None:
        self._send = send
        self.owner = owner
        self.timeout_s = timeout_s
        self.tools: list[McpTool] = []
        self.server_info: dict[str, Any] = {}
        self.ready = asyncio.Event()  # set once the tool list is complete (or listing failed)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    def tool(self, name: str) -> McpTool | None:
        return next((t for t in self.tools if t.name == name), None)

    async def start(self) -> None:
        """``initialize`` then every page of ``tools/list``; failures are logged, not raised."""
        try:
            result = await self.request(
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "xiaoyou", "version": "1"},
                },
            )
            info = result.get("serverInfo")
            self.server_info = info if isinstance(info, dict) else {}
            tools: list[McpTool] = []
            cursor = ""
            for _ in range(MAX_TOOL_PAGES):
                page = await self.request("tools/list", {"cursor": cursor})
                tools.extend(_parse_tools(page.get("tools")))
                cursor = str(page.get("nextCursor") or "")
                if not cursor:
                    break
            self.tools = tools
            log.info("%s: %d MCP tools: %s", self.owner, len(tools), [t.name for t in tools])
        except McpError as exc:
            log.warning("%s: MCP discovery failed: %s", self.owner, exc.message)
        finally:
            self.ready.set()

    async def call(
        self, name: str, arguments: dict[str, Any], *, timeout_s: float | None = None
    ) -> str:
        """Run a device tool; returns the text of its content. Raises McpError."""
        result = await self.request(
            "tools/call", {"name": name, "arguments": arguments}, timeout_s=timeout_s
        )
        texts = [
            str(item.get("text", ""))
            for item in result.get("content") or []
            if isinstance(item, dict) and item.get("type") == "text"
        ]
        text = "\n".join(texts)
        if result.get("isError"):
            raise McpError(f"tool {name} failed: {text or 'no detail'}")
        return text

    async def request(
        self, method: str, params: dict[str, Any], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        wait_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            payload = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
            if not await self._send(payload):
                raise McpError(f"{method}: the device is gone")
            answer = await asyncio.wait_for(future, timeout=wait_s)
        except TimeoutError:
            raise McpError(f"{method}: no answer within {wait_s:g} s", retryable=True) from None
        finally:
            self._pending.pop(rid, None)
        error = answer.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            raise McpError(f"{method}: {message}")
        result = answer.get("result")
        return result if isinstance(result, dict) else {"value": result}

    def on_message(self, payload: dict[str, Any]) -> bool:
        """A device ``mcp`` payload; True if it answered one of our requests."""
        rid = payload.get("id")
        if "method" not in payload and isinstance(rid, int) and rid in self._pending:
            future = self._pending[rid]
            if not future.done():
                future.set_result(payload)
            return True
        if "method" in payload and rid is None:
            log.info("%s: MCP notification %s", self.owner, payload.get("method"))
            return True
        return False

    def close(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()
        self.ready.set()


def _parse_tools(raw: object) -> list[McpTool]:
    tools: list[McpTool] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        schema = item.get("inputSchema")
        tools.append(
            McpTool(
                name=item["name"],
                description=str(item.get("description") or ""),
                input_schema=schema if isinstance(schema, dict) else {},
            )
        )
    return tools
