"""status: superusers get scheduler lanes, queues, running jobs and loaded models as one
message; anyone else gets a short public line (online, how busy, models loaded) and a note
that the details are for superusers, never silence."""

from __future__ import annotations

from typing import Any

from nonebot import get_plugin_config, on_command
from nonebot.adapters import Bot, Event
from nonebot.matcher import Matcher
from nonebot.permission import SUPERUSER
from nonebot.plugin import PluginMetadata
from pydantic import BaseModel, Field

from bot.events import explicit_command
from bot.runtime import get_runtime


class StatusConfig(BaseModel):
    max_running_listed: int = Field(10, ge=0, le=100)


class Config(BaseModel):
    status: StatusConfig = Field(default_factory=StatusConfig)


__plugin_meta__ = PluginMetadata(
    name="status",
    description="查看服务状态（详细信息仅超级用户）",
    usage="/status",
    type="application",
    config=Config,
    supported_adapters={"~onebot.v11"},
)

config = get_plugin_config(Config).status

status = on_command(
    "status",
    aliases={"状态"},
    rule=explicit_command(),
    priority=10,
    block=True,
)


def render_status(stats: dict[str, Any], models: list[dict[str, Any]], *, max_running: int) -> str:
    lines = [f"调度器：{stats.get('state', '?')}，运行 {stats.get('uptime_s', 0):.0f} 秒"]
    for lane, row in stats.get("lanes", {}).items():
        wait = row.get("wait_ms", {}).get("p95")
        lines.append(
            f"- {lane}: 排队 {row.get('queued', 0)} 运行 {row.get('running', 0)}"
            f" 完成 {row.get('completed', 0)} 失败 {row.get('failed', 0)}"
            f" 拒绝 {row.get('rejected', 0)}"
            + (f" 等待p95 {wait:.0f}ms" if wait is not None else "")
        )
    running = stats.get("running", [])
    if running:
        lines.append(f"运行中（{len(running)}）：")
        lines.extend(
            f"  #{job['id']} {job['kind']} {job['owner']} {job.get('label', '')}".rstrip()
            for job in running[:max_running]
        )
    resources = stats.get("resources", {})
    if resources:
        lines.append(f"资源：{_compact(resources)}")
    loaded = sum(1 for m in models if m.get("loaded"))
    lines.append(f"模型：已加载 {loaded}/{len(models)}")
    lines.extend(_model_line(m) for m in models)
    return "\n".join(lines)


def _model_line(model: dict[str, Any]) -> str:
    state = "已加载" if model.get("loaded") else "未加载"
    if model.get("loading"):
        state = "加载中"
    where = f"{model.get('provider') or '?'}@{model.get('device') or '?'}"
    line = f"  {model.get('name', '?')} [{where}] {state}"
    if model.get("in_use"):
        line += f" 使用中×{model['in_use']}"
    if model.get("load_error"):
        line += f" 加载失败：{model['load_error']}"
    return line


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(_compact(v) for v in value)
    return str(value)


def render_public_status(stats: dict[str, Any], models: list[dict[str, Any]]) -> str:
    lanes = stats.get("lanes", {}).values()
    queued = sum(int(row.get("queued", 0)) for row in lanes)
    running = sum(int(row.get("running", 0)) for row in stats.get("lanes", {}).values())
    loaded = sum(1 for m in models if m.get("loaded"))
    return (
        f"小优在线：{running} 个任务进行中，{queued} 个排队；模型已加载 {loaded}/{len(models)}。"
        "详细状态仅超级用户可查看。"
    )


@status.handle()
async def handle_status(bot: Bot, event: Event, matcher: Matcher) -> None:
    services = get_runtime().services
    if not await SUPERUSER(bot, event):
        await matcher.finish(
            render_public_status(services.scheduler.stats(), services.models.snapshot())
        )
    text = render_status(
        services.scheduler.stats(),
        services.models.snapshot(),
        max_running=config.max_running_listed,
    )
    await matcher.finish(text)
