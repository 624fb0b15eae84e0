"""HTTP status of the admin API's errors: a retryable "no room on the GPU" is a 503 (found
as a user: POST /admin/models/sd/load past the VRAM budget answered 500)."""

from __future__ import annotations

from bot.admin.errors import status_for
from core.errors import ModelLoadError, VramUnavailable


def test_no_room_on_the_gpu_is_service_unavailable_not_a_server_error() -> None:
    assert status_for(VramUnavailable("sd: no room for 1800 MB on cuda:0 within 4 s")) == 503
    assert status_for(ModelLoadError("sd: load failed")) == 500
