"""cancel: ``/cancel`` stops the caller's own queued or running jobs (chat, draw, say)."""

from __future__ import annotations

from nonebot import get_plugin_config, on_command
from nonebot.adapters.onebot.v11 import MessageEvent
from nonebot.matcher import Matcher
from nonebot.plugin import PluginMetadata
from pydantic import BaseModel, Field

from bot.events import explicit_command, user_key
from bot.runtime import get_runtime


class CancelConfig(BaseModel):
    include_running: bool = Field(True, description="also stop jobs that already started")


class Config(BaseModel):
    cancel: CancelConfig = Field(default_factory=CancelConfig)


__plugin_meta__ = PluginMetadata(
    name="cancel",
    description="取消你自己排队中或进行中的任务",
    usage="/cancel",
    type="application",
    config=Config,
    supported_adapters={"~onebot.v11"},
)

config = get_plugin_config(Config).cancel

cancel = on_command("cancel", aliases={"取消"}, rule=explicit_command(), priority=10, block=True)


@cancel.handle()
async def handle_cancel(matcher: Matcher, event: MessageEvent) -> None:
    runtime = get_runtime()
    user = user_key(event)
    scheduler = runtime.services.scheduler
    cancelled = 0
    for job_id in runtime.jobs.active(user):  # only jobs this user submitted through the bot
        job = scheduler.job(job_id)
        if job is None or (job["status"] == "running" and not config.include_running):
            continue
        if scheduler.cancel(job_id, reason=f"cancelled by qq user {user}"):
            cancelled += 1
            runtime.jobs.forget(user, job_id)
    await matcher.finish(
        f"已取消 {cancelled} 个任务。" if cancelled else "你没有排队中或进行中的任务。"
    )
