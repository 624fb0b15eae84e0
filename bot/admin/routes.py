"""The /admin router: scheduler stats and jobs, models, devices, bots, trace; token-guarded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from bot.admin.auth import require_token
from bot.admin.dashboard import dashboard_html
from bot.admin.errors import error_response
from bot.admin.workers import ray_health, workers_view
from core.errors import ModelNotConfigured, XiaoyouError
from core.scheduler import JobStatus, TraceEvent

if TYPE_CHECKING:
    from core.services import Services

NDJSON = "application/x-ndjson"
ADMIN_OWNER = "admin"  # the scheduler owner of jobs the admin API submits
OPENAPI_TITLE = "xiaoyou admin API"
TRACE_LIMIT_DEFAULT = 1000
TRACE_LIMIT_MAX = 1_000_000  # more than any trace_capacity; the ring buffer bounds it anyway
TRACE_CHUNK = 200  # events serialised per slice (~10 ms on a slow core)


class LaneName(StrEnum):
    """Lanes as they appear on the wire (lower-case names of core.scheduler.Lane)."""

    realtime = "realtime"
    interactive = "interactive"
    background = "background"


class CancelResult(BaseModel):
    id: int
    cancelled: bool
    status: str


class ModelAction(BaseModel):
    name: str
    action: str
    changed: bool  # unload: False when it was not loaded or is in use right now


async def _jsonl_chunks(events: Sequence[TraceEvent]) -> AsyncIterator[str]:
    """Serialise in slices, yielding to the loop between them: a full 10,000-event trace
    costs ~0.4 s of CPU on a 2-core box, which must not stall realtime device audio."""
    for start in range(0, len(events), TRACE_CHUNK):
        chunk = events[start : start + TRACE_CHUNK]
        yield "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in chunk)
        await asyncio.sleep(0)


def create_admin_router(services: Services) -> APIRouter:
    """Every route under /admin requires ``Authorization: Bearer <settings.admin.token>``.

    The dashboard page itself (/admin/ui) is static HTML with no data in it, so a browser can
    open it; its script asks for the token in a form and sends it as a bearer header with
    every call (never in the URL). Without a configured token it explains how to set one.
    """
    admin_token = services.settings.admin.token
    admin_enabled = admin_token is not None and admin_token.get_secret_value() != ""
    guard = Depends(require_token(admin_token))
    api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[guard])
    sched = services.scheduler

    @api.get("/stats", summary="Scheduler statistics per lane and kind")
    async def stats() -> dict[str, object]:
        out = sched.stats()
        ray = ray_health(services)
        if ray is not None:  # the Ray pool in brief; /admin/workers has the whole view
            out["ray"] = ray
        return out

    @api.get("/tasks", summary="Jobs, newest first, filtered and paginated")
    async def tasks(
        status_: Annotated[JobStatus | None, Query(alias="status")] = None,
        lane: LaneName | None = None,
        kind: str | None = None,
        owner: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, object]:
        items = sched.jobs(
            status=None if status_ is None else status_.value,
            lane=None if lane is None else lane.value,
            kind=kind,
            owner=owner,
            offset=offset,
            limit=limit,
        )
        more = len(items) == limit  # a full page: there may be more after it
        return {"offset": offset, "limit": limit, "next_offset": offset + limit if more else None,
                "items": items}  # fmt: skip

    @api.get("/tasks/{job_id}", summary="One job")
    async def task(job_id: int) -> dict[str, object]:
        found = sched.job(job_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
        return found

    @api.delete("/tasks/{job_id}", summary="Cancel a queued or running job")
    async def cancel(job_id: int) -> JSONResponse:
        found = sched.job(job_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
        done = sched.cancel(job_id)
        after = sched.job(job_id) or found
        body = CancelResult(id=job_id, cancelled=done, status=str(after["status"]))
        # 409: the job had already finished, there was nothing to cancel
        code = status.HTTP_200_OK if done else status.HTTP_409_CONFLICT
        return JSONResponse(body.model_dump(), status_code=code)

    @api.get("/models", summary="Configured models: loaded or not, footprint, last used")
    async def models() -> list[dict[str, object]]:
        snapshot: list[dict[str, object]] = services.models.snapshot()
        return snapshot

    @api.get(
        "/vram",
        summary="Per GPU: the residency plan (budget, resident and offloaded weights, working"
        " memory, jobs waiting for room with their positions) and what the card measures",
    )
    async def vram() -> dict[str, dict[str, object]]:
        plan: dict[str, dict[str, object]] = services.models.vram()
        return plan

    def unknown_model(name: str) -> Response | None:
        """404 with the usual error body when ``name`` is not a configured model."""
        if any(entry.get("name") == name for entry in services.models.snapshot()):
            return None
        error = ModelNotConfigured(f"no model named {name!r}")
        return JSONResponse({"error": error.to_dict()}, status_code=status.HTTP_404_NOT_FOUND)

    @api.post("/models/{name}/load", summary="Load a model now (runs as a scheduler job)")
    async def load(name: str) -> Response:
        if (missing := unknown_model(name)) is not None:
            return missing
        try:
            await services.models.load(name, owner=ADMIN_OWNER)
        except XiaoyouError as exc:
            return error_response(exc)
        return JSONResponse(ModelAction(name=name, action="load", changed=True).model_dump())

    @api.post("/models/{name}/unload", summary="Unload a model if it is loaded and idle")
    async def unload(name: str) -> Response:
        if (missing := unknown_model(name)) is not None:
            return missing
        try:
            changed = await services.models.unload(name)
        except XiaoyouError as exc:
            return error_response(exc)
        body = ModelAction(name=name, action="unload", changed=bool(changed))
        return JSONResponse(body.model_dump())

    @api.get(
        "/workers",
        summary="Worker processes of process-placed models and the Ray pool: boxes, their"
        " resources, actors per model, replica state, running jobs, last error",
    )
    async def workers() -> dict[str, object]:
        return workers_view(services)

    @api.get("/devices", summary="Connected xiaozhi devices")
    async def devices() -> list[dict[str, object]]:
        return services.devices.snapshot()

    @api.get("/health", summary="State-file errors, failed models and what the screens dropped")
    async def health() -> dict[str, object]:
        sections = {name: snapshot() for name, snapshot in services.health.items()}
        state_errors = sections.pop("state_errors", {})
        model_errors = {
            str(entry["name"]): entry["load_error"]
            for entry in services.models.snapshot()
            if entry.get("load_error")
        }
        storage_errors = {
            str(entry["name"]): entry["storage_error"]
            for entry in services.models.snapshot()
            if entry.get("storage_error")
        }
        data_dir = sections.get("data_dir", {})
        reasons = [f"state file {name}: {err}" for name, err in state_errors.items() if err]
        reasons += [f"model {name} failed to load" for name in model_errors]
        reasons += [f"model {name} storage: {err}" for name, err in storage_errors.items()]
        if data_dir.get("low"):
            reasons.append(f"data dir low on space: {data_dir.get('path')}")
        ray = ray_health(services)
        if ray is not None:
            sections["ray"] = ray
            reasons += [str(problem) for problem in ray["problems"]]  # type: ignore[attr-defined]
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "state_errors": state_errors,
            "model_errors": model_errors,
            "model_storage_errors": storage_errors,
            **sections,
        }

    @api.get("/bots", summary="Connected OneBot accounts")
    async def bots() -> list[dict[str, object]]:
        return services.bots.snapshot()

    @api.get("/trace", summary="Recent trace events as JSON lines, oldest first")
    async def trace(
        limit: Annotated[int, Query(ge=1, le=TRACE_LIMIT_MAX)] = TRACE_LIMIT_DEFAULT,
    ) -> StreamingResponse:
        return StreamingResponse(_jsonl_chunks(sched.trace(limit)), media_type=NDJSON)

    router = APIRouter()
    router.include_router(api)

    @router.get("/admin/ui", response_class=HTMLResponse, tags=["admin"], summary="Live dashboard")
    async def ui() -> HTMLResponse:
        # no-store: the page differs by whether a token is configured
        page = dashboard_html(admin_enabled=admin_enabled)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    # OpenAPI of the whole app under /admin, whatever the host app's own docs settings are
    # (NoneBot's FastAPI driver turns /docs off by default). Schemas only, no data: no token.
    @router.get("/admin/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        app = request.app
        schema = get_openapi(title=OPENAPI_TITLE, version=app.version, routes=app.routes)
        return JSONResponse(schema)

    @router.get("/admin/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/admin/openapi.json", title=OPENAPI_TITLE)

    return router
