"""Run as a script in a clean subprocess: what NoneBot really registers, as JSON on stdout.

Initialises NoneBot with the FastAPI driver, registers the OneBot v11 adapter and loads our
plugins the way bot/app.py does, then prints the WebSocket routes of the app and every plugin
setting as the env-file key NoneBot reads it from (``CHAT__PERSONA``) with its default.
"""

from __future__ import annotations

import json

import nonebot
from fastapi.routing import APIWebSocketRoute
from pydantic import BaseModel


def render(value: object) -> str:
    """A default as it would be written in a .env file."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def main() -> None:
    nonebot.init(driver="~fastapi")
    from nonebot.adapters.onebot.v11 import Adapter

    from bot.plugins import PLUGINS

    nonebot.get_driver().register_adapter(Adapter)
    plugin_settings: list[tuple[str, str, str]] = []
    for name in PLUGINS:
        plugin = nonebot.load_plugin(name)
        assert plugin is not None, name
        config = getattr(plugin.module, "Config", None)
        if config is None:
            continue
        for slice_name, field in config.model_fields.items():
            assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
            for key, sub in field.annotation.model_fields.items():
                default = render(sub.get_default(call_default_factory=True))
                env_key = f"{slice_name.upper()}__{key.upper()}"
                plugin_settings.append((env_key, default, sub.description or ""))
    routes = [r.path for r in nonebot.get_app().routes if isinstance(r, APIWebSocketRoute)]
    print(json.dumps({"ws_routes": sorted(routes), "plugin_settings": plugin_settings}))


if __name__ == "__main__":
    main()
