""".env.example covers every setting the service reads, with real defaults and no secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.settings import Settings
from tests.deploy.conftest import REPO, active_env, read_env_file
from tests.deploy.gen_env_example import SECRETS, render, walk

EXAMPLE = REPO / ".env.example"
COMPOSE_ONLY = {"XIAOYOU_PUBLISH_ADDR", "XIAOYOU_PUBLISH_PORT", "XIAOYOU_IMAGE"}


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the environment and ./.env: make both empty for these tests."""
    import os

    for key in list(os.environ):
        if key.startswith("XIAOYOU_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def settings_keys() -> dict[str, Any]:
    return {key: field for key, field in walk(Settings)}


def test_every_setting_is_listed() -> None:
    listed = read_env_file(EXAMPLE)
    missing = sorted(set(settings_keys()) - set(listed))
    assert not missing, f"add to .env.example (python -m tests.deploy.gen_env_example): {missing}"
    assert len(settings_keys()) > 50  # the walk really descended into the nested models


def test_no_unknown_xiaoyou_keys() -> None:
    compose = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    for key in read_env_file(EXAMPLE):
        if key.startswith("XIAOYOU_") and key not in settings_keys():
            assert key in COMPOSE_ONLY and f"${{{key}:-" in compose, key


def test_every_plugin_setting_is_listed(nonebot_facts: dict[str, Any]) -> None:
    listed = read_env_file(EXAMPLE)
    plugin_keys = {key for key, _default, _doc in nonebot_facts["plugin_settings"]}
    assert {"CHAT__PERSONA", "DRAW__DAILY_QUOTA"} <= plugin_keys
    assert not sorted(plugin_keys - set(listed))
    for key, default, _doc in nonebot_facts["plugin_settings"]:
        assert listed[key] == default, f"{key}: documented {listed[key]!r}, real {default!r}"


def test_documented_defaults_are_the_real_defaults() -> None:
    listed = read_env_file(EXAMPLE)
    for key, field in settings_keys().items():
        if key in SECRETS:
            continue
        real = render(field.get_default(call_default_factory=True))
        assert listed[key] == real, f"{key}: documented {listed[key]!r}, real default {real!r}"


def test_secrets_are_empty_and_secret_typed() -> None:
    active = active_env(EXAMPLE)
    for key in SECRETS:
        assert active[key] == "", f"{key} must ship empty"
    secret_fields = [k for k, f in settings_keys().items() if "SecretStr" in str(f.annotation)]
    assert set(SECRETS) <= set(secret_fields)
    listed = read_env_file(EXAMPLE)
    for key in secret_fields:
        assert listed[key] in ("", "[]"), f"{key} must not carry a value"


def test_the_example_loads_as_settings(tmp_path: Path) -> None:
    """Copied as .env, the file gives a valid Settings (admin off, loopback bind)."""
    env_file = tmp_path / ".env"
    env_file.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    settings = Settings(_env_file=env_file)
    assert settings.server.host == "127.0.0.1"
    assert settings.admin.token is None or settings.admin.token.get_secret_value() == ""


def test_every_documented_value_validates(tmp_path: Path) -> None:
    """Uncommenting any line keeps the settings valid (values are well-formed JSON etc.)."""
    lines = []
    for key, value in read_env_file(EXAMPLE).items():
        if key.startswith("XIAOYOU_") and key not in COMPOSE_ONLY and value != "":
            lines.append(f"{key}={value}")
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = Settings(_env_file=env_file)
    defaults = Settings.model_validate({})
    assert loaded.model_dump(mode="json") == defaults.model_dump(mode="json")
    assert json.loads(read_env_file(EXAMPLE)["XIAOYOU_SCHEDULER__RESOURCES"]) == dict(
        defaults.scheduler.resources
    )
    assert not isinstance(loaded.admin.token, SecretStr)
