"""Unauthenticated operational endpoints: /healthz, /readyz and Prometheus /metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.admin.metrics import build_registry

if TYPE_CHECKING:
    from core.services import Services


def create_ops_router(services: Services) -> APIRouter:
    """/healthz: the process answers. /readyz: the scheduler accepts jobs and the warm-start
    models are loaded (``models.warm_start``; with it off, models load on first use)."""
    router = APIRouter(tags=["ops"])
    registry = build_registry(services)

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, object]:
        uptime_s = time.time() - services.started_at if services.started_at else 0.0
        return {"status": "ok", "uptime_s": round(uptime_s, 3)}

    @router.get("/readyz", summary="Readiness: jobs accepted and the start-up models loaded")
    async def readyz() -> JSONResponse:
        accepting = services.scheduler.accepting
        models = services.models.warm_up_status()
        ready = accepting and bool(models["ready"])
        code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
        body = {
            "status": "ready" if ready else "not ready",
            "scheduler_accepting": accepting,
            "models": models,
        }
        return JSONResponse(body, status_code=code)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
