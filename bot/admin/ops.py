"""Unauthenticated operational endpoints: /healthz, /readyz and Prometheus /metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.admin.metrics import build_registry

# the models every deployment runs (voice and chat); a failed load of one makes /readyz 503
# until a later use or an admin load succeeds. vl/sd are optional features.
DEFAULT_MODELS = ("vad", "asr", "llm", "tts")

if TYPE_CHECKING:
    from core.services import Services


def create_ops_router(services: Services) -> APIRouter:
    """/healthz: the process answers. /readyz: the scheduler accepts jobs, the warm-start
    models are loaded (``models.warm_start``; with it off, models load on first use) and no
    default model's last load failed."""
    router = APIRouter(tags=["ops"])
    registry = build_registry(services)

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, object]:
        uptime_s = time.time() - services.started_at if services.started_at else 0.0
        return {"status": "ok", "uptime_s": round(uptime_s, 3)}

    @router.get("/readyz", summary="Readiness: jobs accepted, the start-up models loaded")
    async def readyz() -> JSONResponse:
        accepting = services.scheduler.accepting
        models = services.models.warm_up_status()
        # names only: the load errors carry paths and are for admins (/admin/models, the log)
        warm_errors = models.pop("errors", {})
        # why, as error codes only (e.g. "disk_full"): no paths for an unauthenticated route
        reasons = {
            str(entry["name"]): str(entry.get("load_error_code") or "model_load_failed")
            for entry in services.models.snapshot()
            if entry.get("name") in DEFAULT_MODELS and entry.get("load_error")
        }
        for name in warm_errors if isinstance(warm_errors, dict) else ():
            reasons.setdefault(str(name), "model_load_failed")
        failed = sorted(reasons)
        ready = accepting and bool(models["ready"]) and not failed
        code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
        body: dict[str, object] = {
            "status": "ready" if ready else "not ready",
            "scheduler_accepting": accepting,
            "models": models,
        }
        if failed:
            body["failed_models"] = failed
            body["reasons"] = {name: reasons[name] for name in failed}
        return JSONResponse(body, status_code=code)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
