"""The real app (create_app, the device hub, the OneBot adapter) served like ``xiaoyou serve``
(bot.serve.DrainingServer on loopback) with test-double models on the real scheduler. Run as
a child process by the abuse tests and bench/soak_faults.py (NoneBot keeps one global driver
per process, and SIGTERM must reach a real process).

Usage: python -m tests.abuse.server PORT '{"chat_delay_s": 0.2, "devices": {...}}'
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from bot.app import create_app
from bot.serve import serve
from core.errors import ModelLoadError
from core.models.llm import ChatMessage
from core.scheduler import JobContext, JobHandle, JobSpec, Lane, Scheduler
from core.services import Services
from core.settings import build_settings
from devices.hub import DeviceHub
from tests.bot.fakes import FakeInference as BotFake
from tests.bot.fakes import FakeModels
from tests.devices.fakes import FakeInference as DeviceFake

ONEBOT_TOKEN = "abuse-onebot-token"
ADMIN_TOKEN = "abuse-admin-token"
SELF_ID = 42


@dataclass
class SlowChat(BotFake):
    """Chat jobs take ``chat_delay_s`` each and hold the one cpu slot: they queue."""

    chat_delay_s: float = 0.0

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        lane: Lane,
        owner: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        max_sentences: int | None = None,
    ) -> JobHandle[str]:
        async def work(ctx: JobContext) -> None:
            await asyncio.sleep(self.chat_delay_s)
            await ctx.checkpoint()
            self._fail("chat")
            for piece in self.chat_pieces:
                await ctx.emit(piece)

        spec = JobSpec(kind="llm", lane=lane, owner=owner, resources={"cpu": 1})
        return self.scheduler.submit(work, spec=spec)


def main(port: int, options: dict[str, Any]) -> None:
    settings = build_settings(
        server={
            "host": "127.0.0.1",
            "port": port,
            "log_level": "WARNING",
            **options.get("server", {}),
        },
        admin={"token": ADMIN_TOKEN},
        bot={
            "onebot_access_token": ONEBOT_TOKEN,
            "nickname": ["小优"],
            "command_start": ["/"],
            **options.get("bot", {}),
        },
        devices=options.get("devices", {}),
        scheduler={
            "prewarm": False,
            "resources": {"cpu": 1},
            "thread_workers": 2,
            "drain_timeout_s": float(options.get("drain_timeout_s", 2.0)),
            "cancel_timeout_s": 1.0,
            **options.get("scheduler", {}),
        },
    )
    scheduler = Scheduler(settings.scheduler)
    chat = SlowChat(scheduler, chat_delay_s=float(options.get("chat_delay_s", 0.0)))
    device_fake = DeviceFake(scheduler, token_s=float(options.get("device_token_s", 0.005)))
    if options.get("broken_llm"):  # a model that fails to load, path and all
        broken = ModelLoadError("llm: load failed: ValueError: /models/llm/secret.gguf: bad magic")
        device_fake.chat_error = broken
        chat.errors["chat"] = broken
    hub = DeviceHub(
        settings.devices, device_fake, scheduler, state_path=settings.server.data_dir / "dev.json"
    )
    services = Services(
        settings=settings,
        scheduler=scheduler,
        models=cast(Any, FakeModels()),
        inference=cast(Any, chat),
        devices=hub,
    )
    app = create_app(settings, services=services, device_hub=hub)
    serve(app, settings, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
