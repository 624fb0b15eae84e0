"""The real app (create_app + uvicorn on loopback) with a test-double Inference on the real
scheduler, run as a child process by test_e2e.py (NoneBot keeps one global driver per process).

Usage: python -m tests.bot.e2e_server PORT ONEBOT_TOKEN ADMIN_TOKEN
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any, cast

import uvicorn

from bot.app import create_app
from core.scheduler import Scheduler
from core.services import Services
from core.settings import build_settings
from tests.bot.fakes import FakeInference, FakeModels


def main(port: int, onebot_token: str, admin_token: str) -> None:
    settings = build_settings(
        server={"host": "127.0.0.1", "port": port, "log_level": "INFO"},
        admin={"token": admin_token},
        bot={"onebot_access_token": onebot_token, "nickname": ["小优"], "command_start": ["/"]},
        devices={"enabled": False},
        scheduler={"prewarm": False, "thread_workers": 1, "drain_timeout_s": 2.0},
    )
    scheduler = Scheduler(settings.scheduler)
    services = Services(
        settings=settings,
        scheduler=scheduler,
        models=cast(Any, FakeModels()),
        inference=cast(
            Any, FakeInference(scheduler, see_answer="图里是一个红色方块", draw_delay_s=1.0)
        ),
    )
    app = create_app(
        settings,
        services=services,
        plugin_config={
            # the test plays a OneBot implementation on this machine: get_image may name a
            # file under the temp dir, and its "expired" URL is on 127.0.0.1
            "see": {
                "download_timeout_s": 2.0,
                "local_image_dirs": [tempfile.gettempdir()],
            }
        },
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -SIGTERM
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
