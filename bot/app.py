"""The composition root: settings in, the NoneBot2 FastAPI app out, with every service wired.

One process, one asyncio loop. NoneBot's FastAPI driver app serves the OneBot v11 reverse
WebSocket (``/onebot/v11/ws``), the device WebSocket and the admin/ops API on one port.
:func:`create_app` may be called once per process (NoneBot keeps one global driver).

Lifecycle (driver lifespan hooks): start-up starts the scheduler and the warm start (the
default models load in the background; ``/readyz`` turns ready once they are loaded); shutdown
closes the device hub, stops the scheduler (drain, then cancel), closes the model manager and
the HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import nonebot
from fastapi import Depends, FastAPI
from nonebot.adapters.onebot.v11 import Bot as OneBotV11Bot
from nonebot.log import logger

from bot.admin import create_admin_router, create_ops_router
from bot.admin.auth import require_token
from bot.directory import BotDirectory
from bot.onebot import OneBotAdapter
from bot.plugins import PLUGINS
from bot.runtime import BotRuntime, install_runtime
from bot.state import QuotaBook
from bot.summary import startup_summary, with_host_defaults
from core.scheduler import Scheduler
from core.services import Services
from core.settings import Settings

if TYPE_CHECKING:
    from core.models.settings import ModelsSettings
    from core.workers.ray_pool import RayPool
    from devices.hub import DeviceHub

HTTP_TIMEOUT_S = 10.0  # image downloads; the see plugin applies its own, tighter budget
QUOTA_FILE = "bot_quotas.json"  # under server.data_dir: daily draw counts survive restarts
DEVICES_FILE = "devices_activated.json"  # under server.data_dir: device activations


def build_services(settings: Settings) -> tuple[Services, DeviceHub]:
    """The long-lived services, not yet started. The model and device stacks are imported
    here, not at module level, so tests that inject their own services do not load them."""
    from core.models.inference import Inference
    from core.models.manager import ModelManager
    from core.models.settings import with_remote_resources
    from devices.hub import DeviceHub

    scheduler = Scheduler(with_remote_resources(settings.scheduler, settings.models))
    models_settings, cluster = _cluster(settings, scheduler)
    models = ModelManager(models_settings, scheduler, settings.server.data_dir / "models")
    inference = Inference(scheduler, models, models_settings, cluster=cluster)
    hub = DeviceHub(
        settings.devices,
        inference,
        scheduler,
        state_path=settings.server.data_dir / DEVICES_FILE,
        keeps_prompts=models_settings.llm.provider == "llamacpp",  # local or on a Ray worker
    )
    services = Services(
        settings=settings,
        scheduler=scheduler,
        models=models,
        inference=inference,
        devices=hub,
        cluster=cluster,
    )
    return services, hub


def log_records_at(level: str) -> None:
    """Give NoneBot's stdout handler the configured level as its own. NoneBot adds it at
    level 0 with a filter, so every debug call (several per QQ event: matcher checks, parser
    errors with their exception) builds a whole loguru record, frame and time included, only
    for the filter to drop it; with the level on the handler loguru returns at once."""
    from nonebot import log as nonebot_log

    with contextlib.suppress(ValueError):  # already replaced (create_app in one more test)
        logger.remove(nonebot_log.logger_id)
    nonebot_log.logger_id = logger.add(
        sys.stdout,
        level=level.upper(),
        diagnose=False,
        filter=nonebot_log.default_filter,
        format=nonebot_log.default_format,
    )


# the packages whose standard-library loggers (device turns and their stage times, model
# fallbacks, scheduler notices) go to NoneBot's loguru output with the configured level
OUR_LOGGERS = ("bot", "core", "devices")


class ToLoguru(logging.Handler):
    """A ``logging`` record into loguru under its logger's name ("devices.turn | …")."""

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        level: str | int = record.levelname
        try:
            logger.level(record.levelname)
        except ValueError:  # a custom level loguru does not know
            level = record.levelno

        def named(loguru_record: Any) -> None:
            loguru_record["name"] = name

        logger.patch(named).opt(exception=record.exc_info).log(level, record.getMessage())


def route_our_logs(level: str) -> None:
    """Forward our modules' ``logging`` records to loguru at the configured level. Without it
    Python printed only their warnings, bare and undated (its last-resort handler), and no
    device turn was ever logged. Once per logger: a second app in the same process (tests)
    changes only the level."""
    for name in OUR_LOGGERS:
        our = logging.getLogger(name)
        our.setLevel(level.upper())
        if not any(isinstance(h, ToLoguru) for h in our.handlers):
            our.addHandler(ToLoguru())


def data_dir_health(data_dir: Path) -> dict[str, object]:
    """Free space where state files and assembled models live; ``low`` below the margin an
    assembly keeps (a full disk is why quota saves and model assemblies fail)."""
    from core.models.storage import FREE_MARGIN_BYTES, free_bytes

    try:
        free = free_bytes(data_dir.resolve())
    except OSError as exc:
        return {"path": str(data_dir), "error": str(exc), "low": True}
    return {"path": str(data_dir), "free_mb": round(free / 1e6, 1), "low": free < FREE_MARGIN_BYTES}


def _cluster(settings: Settings, scheduler: Scheduler) -> tuple[ModelsSettings, RayPool | None]:
    """With ``ray.address`` set: the Ray pool of the ``ray.workers`` models (Ray itself is
    imported when the pool starts), and the models settings without those models in the
    warm start (they load on their boxes). Without it: nothing of Ray, not even its import."""
    if not settings.ray.enabled:
        return settings.models, None
    from core.workers.base import WorkerSpec
    from core.workers.factories import CLUSTER_FACTORIES
    from core.workers.ray_pool import RayPool

    specs: dict[str, WorkerSpec] = {
        w.model: WorkerSpec(w.model, CLUSTER_FACTORIES[w.model], getattr(settings.models, w.model))
        for w in settings.ray.workers
    }
    hosted = set(specs)
    warm = [name for name in settings.models.warm_start_models if name not in hosted]
    models = settings.models.model_copy(update={"warm_start_models": warm})
    return models, RayPool(settings.ray, scheduler, specs)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def nonebot_options(settings: Settings) -> dict[str, Any]:
    """NoneBot's global config from our settings (explicit values beat any ``.env``)."""
    token = settings.bot.onebot_access_token
    return {
        "driver": "~fastapi",
        "host": settings.server.host,
        "port": settings.server.port,
        "log_level": settings.server.log_level,
        "onebot_access_token": token.get_secret_value() if token is not None else None,
        "superusers": set(settings.bot.superusers),
        "nickname": set(settings.bot.nickname),
        "command_start": set(settings.bot.command_start),
        "fastapi_reload": False,
    }


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    device_hub: DeviceHub | None = None,
    plugin_config: dict[str, Any] | None = None,
) -> FastAPI:
    """Initialise NoneBot, load the plugins and return the ASGI app.

    ``services``/``device_hub`` default to the real ones from :func:`build_services`; tests
    pass their own (a test-double Inference on the real scheduler). ``plugin_config`` holds
    plugin slices such as ``{"chat": {"persona": "..."}}`` (NoneBot also reads ``.env``).
    """
    settings = with_host_defaults(settings)  # e.g. the devices' time zone: the host's
    if services is None:
        services, device_hub = build_services(settings)
    from core.models.settings import unselected_provider_settings

    for note in unselected_provider_settings(settings.models):
        logger.warning(note)
    nonebot.init(**(plugin_config or {}), **nonebot_options(settings))
    log_records_at(settings.server.log_level)
    route_our_logs(settings.server.log_level)
    driver = nonebot.get_driver()
    if settings.bot.enabled:
        OneBotAdapter.max_message_chars = settings.bot.max_message_chars
        OneBotAdapter.screen_unaddressed = settings.bot.screen_unaddressed
        OneBotAdapter.nicknames = tuple(settings.bot.nickname)
        OneBotAdapter.command_starts = tuple(settings.bot.command_start)
        driver.register_adapter(OneBotAdapter)  # the v11 adapter, constant-time token check
        if settings.bot.onebot_access_token is None and not _is_loopback(settings.server.host):
            logger.warning(
                f"OneBot access token is not set and the server listens on {settings.server.host}:"
                " anyone who can reach the port can connect as a bot (set bot.onebot_access_token)"
            )
    if (
        settings.devices.enabled
        and settings.devices.auth_secret is None
        and not settings.devices.tokens
        and not _is_loopback(settings.server.host)
    ):
        logger.warning(
            f"device auth is off and the server listens on {settings.server.host}: any device can"
            " connect (set devices.auth_secret for per-device tokens)"
        )
    app: FastAPI = nonebot.get_app()

    bots = BotDirectory(nonebot.get_bots)
    services.bots = bots
    runtime = BotRuntime(
        services=services,
        http=httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, trust_env=False),
        quotas=QuotaBook(path=settings.server.data_dir / QUOTA_FILE),
    )
    install_runtime(app, runtime)
    services.health["state_errors"] = lambda: {
        "bot_quotas": runtime.quotas.state_error,
        "device_activations": device_hub.auth.state_error if device_hub else None,
    }
    services.health["data_dir"] = lambda: data_dir_health(settings.server.data_dir)
    if settings.bot.enabled:
        services.health["onebot"] = OneBotAdapter.counters
        services.health["rate_limits"] = runtime.limits.snapshot

    if device_hub is not None and settings.devices.enabled:
        app.include_router(device_hub.router())
    app.include_router(create_ops_router(services))
    app.include_router(create_admin_router(services))
    if device_hub is not None and settings.devices.enabled:
        guard = Depends(require_token(settings.admin.token))
        app.include_router(device_hub.admin_router(), prefix="/admin", dependencies=[guard])

    @driver.on_startup
    async def _start() -> None:
        services.started_at = time.time()
        await services.scheduler.start()
        if services.cluster is not None:  # join the Ray cluster, start the hosted models
            await services.cluster.start()
        services.models.start_warm_up()
        logger.info(f"xiaoyou started on {settings.server.host}:{settings.server.port}")
        logger.opt(colors=False).info("\n" + startup_summary(settings))

    @driver.on_shutdown
    async def _stop() -> None:
        # Reverse order of dependence; every step runs even if an earlier one raised.
        async with contextlib.AsyncExitStack() as steps:
            steps.push_async_callback(runtime.aclose)
            if services.cluster is not None:
                steps.push_async_callback(services.cluster.stop)  # after the scheduler's drain
            steps.push_async_callback(services.models.close)
            steps.push_async_callback(services.scheduler.stop)  # drain, then cancel
            if device_hub is not None:
                steps.push_async_callback(device_hub.close)  # runs first
        logger.info("xiaoyou stopped")

    async def drain() -> None:
        """SIGTERM, before the server closes any socket (bot/serve.py): refuse new devices
        and jobs, cancel queued jobs (their users are told), let running jobs finish within
        the drain time, wait for the replies to go out, then close device and OneBot sockets
        with 1001 and a reason. The lifespan shutdown (_stop) then finds little left to do."""
        if device_hub is not None:
            device_hub.stop_admission()
        turns = (
            device_hub.wait_turns(settings.scheduler.drain_timeout_s)
            if device_hub is not None
            else asyncio.sleep(0)
        )
        await asyncio.gather(services.scheduler.stop(cancel_queued=True), turns)
        if device_hub is not None:
            await device_hub.close()
        await _finish_bot_handlers(settings.scheduler.cancel_timeout_s + DRAIN_REPLY_S)
        await _close_bot_sockets()

    install_drain(app, drain)

    @driver.on_bot_connect
    async def _bot_connected(bot: OneBotV11Bot) -> None:
        bots.connected(bot.self_id)

    @driver.on_bot_disconnect
    async def _bot_disconnected(bot: OneBotV11Bot) -> None:
        bots.disconnected(bot.self_id)

    if settings.bot.enabled:
        for plugin in PLUGINS:
            nonebot.load_plugin(plugin)
    return app


DRAIN_REPLY_S = 3.0  # shutdown: time for the replies to cancelled requests to reach QQ
DRAIN_KEY = "xiaoyou_drain"


def install_drain(app: Any, drain: Callable[[], Awaitable[None]]) -> None:
    setattr(app.state, DRAIN_KEY, drain)


def drain_of(app: Any) -> Callable[[], Awaitable[None]] | None:
    drain: Callable[[], Awaitable[None]] | None = getattr(app.state, DRAIN_KEY, None)
    return drain


def _onebot_adapter() -> OneBotAdapter | None:
    try:
        adapter = nonebot.get_adapter(OneBotAdapter)
    except ValueError:  # the bot side is disabled
        return None
    return adapter if isinstance(adapter, OneBotAdapter) else None


async def _finish_bot_handlers(timeout_s: float) -> None:
    """Wait for the event handlers in flight (each sends its reply), bounded."""
    adapter = _onebot_adapter()
    if adapter is None:
        return
    pending = [task for task in adapter.tasks if not task.done()]
    if pending:
        _, late = await asyncio.wait(pending, timeout=timeout_s)
        if late:
            logger.warning(f"shutdown: {len(late)} QQ handlers still running; cancelling them")
            for task in late:
                task.cancel()


async def _close_bot_sockets() -> None:
    adapter = _onebot_adapter()
    if adapter is None:
        return
    for self_id, websocket in list(adapter.connections.items()):
        with contextlib.suppress(Exception):
            await websocket.close(1001, "server shutting down")
        logger.info(f"shutdown: closed the OneBot socket of {self_id} (1001)")
