"""go-cqhttp and NapCat configs point at the path, port and token the service really uses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from core.settings import Settings
from tests.deploy.conftest import REPO, TOKEN

GOCQ = REPO / "bots" / "config" / "go-cqhttp" / "config.yml"
NAPCAT = REPO / "bots" / "config" / "napcat"
_GOCQ_VAR = re.compile(r"\${([a-zA-Z_]+[a-zA-Z0-9_:/.]*)}")  # go-cqhttp's own expansion rule


def gocq_expand(text: str, env: Callable[[str], str]) -> str:
    """``${VAR}`` / ``${VAR:default}`` exactly as go-cqhttp expands its config.yml."""

    def one(match: re.Match[str]) -> str:
        name, sep, default = match.group(1).partition(":")
        value = env(name)
        return default if sep and value == "" else value

    return _GOCQ_VAR.sub(one, text)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text("utf-8"))
    return loaded


def service_settings() -> Settings:
    """The Settings the xiaoyou container builds from its compose environment and .env."""
    env = {k: str(v) for k, v in compose()["services"]["xiaoyou"]["environment"].items()}
    env["XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN"] = TOKEN  # what .env provides
    nested: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        section, _, field = key.removeprefix("XIAOYOU_").lower().partition("__")
        nested.setdefault(section, {})[field] = value
    return Settings.model_validate(nested)


def check_url(url: str, ws_routes: list[str]) -> None:
    parts = urlsplit(url)
    services = compose()["services"]
    settings = service_settings()
    assert parts.scheme == "ws"
    assert parts.hostname == "xiaoyou" and "xiaoyou" in services  # the compose service name
    assert parts.port == settings.server.port == 8080
    assert settings.server.host == "0.0.0.0"  # reachable from the other containers
    published = services["xiaoyou"]["ports"][0]
    assert published.endswith(f":{settings.server.port}")  # container side of the mapping
    assert parts.path in ws_routes, (parts.path, ws_routes)
    assert parts.path == "/onebot/v11/ws"


def test_nonebot_registers_the_onebot_routes(nonebot_facts: dict[str, Any]) -> None:
    assert "/onebot/v11/ws" in nonebot_facts["ws_routes"]


def test_gocqhttp_universal_reverse_ws(nonebot_facts: dict[str, Any]) -> None:
    raw = GOCQ.read_text(encoding="utf-8")
    env = {"XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN": TOKEN, "GOCQ_UIN": ""}
    config = yaml.safe_load(gocq_expand(raw, lambda name: env.get(name, "")))
    reverse = [s["ws-reverse"] for s in config["servers"] if "ws-reverse" in s]
    assert len(reverse) == 1
    ws = reverse[0]
    assert set(ws) >= {"universal", "middlewares"} and not ({"api", "event"} & set(ws))
    check_url(ws["universal"], nonebot_facts["ws_routes"])
    assert ws["middlewares"]["access-token"] == TOKEN
    assert ws["middlewares"]["access-token"] == (
        service_settings().bot.onebot_access_token.get_secret_value()  # type: ignore[union-attr]
    )
    assert config["message"]["post-format"] == "array"
    assert config["account"]["uin"] == 0  # QR-code login unless GOCQ_UIN is set
    # the committed file holds a placeholder, never the token itself
    assert yaml.safe_load(raw)["default-middlewares"]["access-token"] == (
        "${XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN}"
    )


def test_gocqhttp_gets_its_variables_from_compose() -> None:
    gocq = compose()["services"]["gocqhttp"]
    used = set(_GOCQ_VAR.findall(GOCQ.read_text(encoding="utf-8")))
    names = {u.partition(":")[0] for u in used}
    assert names == {"GOCQ_UIN", "XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN"}
    assert names <= set(gocq["environment"])
    mounts = [v.split(":") for v in gocq["volumes"]]
    assert ["./bots/config/go-cqhttp/config.yml", "/data/config.yml", "ro"] in mounts


def render_napcat(tmp_path: Path, token: str) -> subprocess.CompletedProcess[str]:
    entry = tmp_path / "app" / "entrypoint.sh"
    entry.parent.mkdir(exist_ok=True)
    entry.write_text('echo "started in $(pwd)" > "$(pwd)/started"\n', encoding="utf-8")
    env = {
        "PATH": os.environ["PATH"],
        "ACCOUNT": "1234567",
        "XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN": token,
        "NAPCAT_TEMPLATE": str(NAPCAT / "onebot11.json"),
        "NAPCAT_CONFIG_DIR": str(tmp_path / "app" / "napcat" / "config"),
        "NAPCAT_ENTRYPOINT": str(entry),
    }
    return subprocess.run(
        ["bash", str(NAPCAT / "render-config.sh")], env=env, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_napcat_reverse_ws(tmp_path: Path, nonebot_facts: dict[str, Any]) -> None:
    done = render_napcat(tmp_path, TOKEN)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "app" / "started").read_text().strip() == f"started in {tmp_path / 'app'}"
    rendered = tmp_path / "app" / "napcat" / "config" / "onebot11_1234567.json"
    clients = json.loads(rendered.read_text(encoding="utf-8"))["network"]["websocketClients"]
    assert len(clients) == 1 and clients[0]["enable"] is True
    check_url(clients[0]["url"], nonebot_facts["ws_routes"])
    assert clients[0]["token"] == TOKEN
    assert clients[0]["messagePostFormat"] == "array"
    template = json.loads((NAPCAT / "onebot11.json").read_text(encoding="utf-8"))
    token_in_git = template["network"]["websocketClients"][0]["token"]
    assert token_in_git == "${XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_napcat_refuses_tokens_that_would_break_json(tmp_path: Path) -> None:
    done = render_napcat(tmp_path, 'bad"token')
    assert done.returncode == 2 and "token" in done.stderr
    assert not (tmp_path / "app" / "started").exists()


def test_napcat_compose_wiring() -> None:
    napcat = compose()["services"]["napcat"]
    assert napcat["profiles"] == ["napcat"]
    assert napcat["entrypoint"] == ["bash", "/xiaoyou/render-config.sh"]
    assert "./bots/config/napcat:/xiaoyou:ro" in napcat["volumes"]
    assert "XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN" in napcat["environment"]
