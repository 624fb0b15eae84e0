"""docs/deploy.md names only settings, paths and commands that really exist."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from core.settings import DeviceSettings, Settings
from devices.hub import OTA_PATH
from tests.deploy.conftest import REPO, read_env_file
from tests.deploy.gen_env_example import walk

DOC = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")


def test_every_setting_named_in_the_doc_exists() -> None:
    named = set(re.findall(r"\b(XIAOYOU_[A-Z0-9_]+)", DOC))
    known = {key for key, _field in walk(Settings)} | set(read_env_file(REPO / ".env.example"))
    assert len(named) > 15
    assert not sorted(named - known)


def test_example_settings_in_the_doc_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `KEY=value` lines of the doc's shell blocks, as a .env file, give valid settings."""
    lines = re.findall(r"^XIAOYOU_[A-Z0-9_]+=.+$", DOC, re.MULTILINE)
    assert len(lines) > 10
    for key in [k for k in os.environ if k.startswith("XIAOYOU_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    env_file = tmp_path / "doc.env"
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = Settings(_env_file=env_file)
    assert str(settings.models.llm.model_path).endswith(".gguf")
    assert settings.models.llm.device == "cuda:0"
    assert settings.models.asr.provider == "funasr"
    assert settings.scheduler.resources["vram:0"] > 0


def test_device_paths_in_the_doc_are_the_served_ones() -> None:
    assert f"http://<server-LAN-IP>:8080{OTA_PATH}" in DOC
    assert f"ws://<server-LAN-IP>:8080{DeviceSettings().ws_path}" in DOC
    assert "/onebot/v11/ws" in DOC
