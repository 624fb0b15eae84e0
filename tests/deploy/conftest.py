"""Fixtures for the deployment files: repo paths and what NoneBot really registers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.nonebug_off import (  # noqa: F401 - fixtures, used by name
    _nonebot_init,
    after_nonebot_init,
    nonebug_init,
)

REPO = Path(__file__).resolve().parents[2]
TOKEN = "0123456789abcdef0123456789abcdef"  # a throwaway test value, shaped like a real token


def probe_nonebot(cwd: Path) -> dict[str, Any]:
    """Run tests/deploy/nonebot_probe.py in a subprocess (cwd without any .env file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIAOYOU_")}
    env["PYTHONPATH"] = str(REPO)
    script = REPO / "tests" / "deploy" / "nonebot_probe.py"
    done = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="session")
def nonebot_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return probe_nonebot(tmp_path_factory.mktemp("nonebot-probe"))


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file, commented (``# KEY=value``) or not."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.removeprefix("#").strip() if line.startswith("# ") else line
        key, sep, value = text.partition("=")
        if sep and key and key.replace("_", "").isalnum() and key.upper() == key:
            out[key] = value
    return out


def active_env(path: Path) -> dict[str, str]:
    """Only the uncommented ``KEY=value`` lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (line.partition("=") for line in lines if line and not line.startswith("#"))
    return {key: value for key, sep, value in pairs if sep}
