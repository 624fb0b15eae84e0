"""help: ``/help`` (``帮助``) lists what the bot can do, built from each loaded plugin's
``__plugin_meta__`` (description and usage), in the order of :data:`bot.plugins.PLUGINS`."""

from __future__ import annotations

import nonebot
from nonebot import on_command
from nonebot.matcher import Matcher
from nonebot.plugin import PluginMetadata

from bot.events import explicit_command

__plugin_meta__ = PluginMetadata(
    name="help",
    description="列出小优会做的事",
    usage="/help 或 /帮助",
    type="application",
    supported_adapters={"~onebot.v11"},
)

help_cmd = on_command(
    "help", aliases={"帮助", "菜单"}, rule=explicit_command(), priority=5, block=True
)


def render_help() -> str:
    from bot.plugins import PLUGINS

    lines = ["小优会做这些（群里请 @ 我或用 / 开头）："]
    for module in PLUGINS:
        plugin = nonebot.get_plugin_by_module_name(module)
        meta = plugin.metadata if plugin is not None else None
        if meta is None or module == __name__:
            continue
        lines.append(f"【{meta.name}】{meta.description}")
        lines.extend(f"  {line}" for line in meta.usage.splitlines() if line.strip())
    return "\n".join(lines)


@help_cmd.handle()
async def handle_help(matcher: Matcher) -> None:
    await matcher.finish(render_help())
