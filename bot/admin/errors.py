"""Map core.errors to HTTP answers: a status code plus the error's own ``to_dict()`` body."""

from __future__ import annotations

from fastapi import status
from fastapi.responses import JSONResponse

from core.errors import (
    DeadlineExceeded,
    JobCancelled,
    ModelLoadError,
    ModelNotConfigured,
    QueueFull,
    ResourceUnsatisfiable,
    SchedulerClosed,
    VramUnavailable,
    XiaoyouError,
)

# Most specific first; anything else deliberate is a 500 with its code and message. Unknown
# model names are answered 404 before any call; a known model that cannot load because its
# settings lack something (no model folder) is a 409, like a footprint over the budget; no
# room on the GPU in time (models in use hold it: retryable) is a 503.
_STATUS: tuple[tuple[type[XiaoyouError], int], ...] = (
    (ModelNotConfigured, status.HTTP_409_CONFLICT),
    (VramUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (ModelLoadError, status.HTTP_500_INTERNAL_SERVER_ERROR),
    (ResourceUnsatisfiable, status.HTTP_409_CONFLICT),
    (JobCancelled, status.HTTP_409_CONFLICT),
    (QueueFull, status.HTTP_503_SERVICE_UNAVAILABLE),
    (SchedulerClosed, status.HTTP_503_SERVICE_UNAVAILABLE),
    (DeadlineExceeded, status.HTTP_504_GATEWAY_TIMEOUT),
)


def status_for(exc: XiaoyouError) -> int:
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def error_response(exc: XiaoyouError) -> JSONResponse:
    """``{"error": {"code", "message", "retryable", ...}}`` with the mapped status."""
    return JSONResponse({"error": exc.to_dict()}, status_code=status_for(exc))
