"""The xiaoyou CLI: subcommand registry, check-config masking secrets, config errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.app import nonebot_options
from bot.cli import COMMANDS, build_parser, command_parser, main
from core.settings import build_settings

ROOT = Path(__file__).resolve().parents[2]


def test_registry_and_parsers() -> None:
    assert set(COMMANDS) == {"serve", "simulate-device", "check-config"}
    top = build_parser().parse_args(["serve", "--port", "9000", "--host", "0.0.0.0"])
    assert (top.command, top.args) == ("serve", ["--port", "9000", "--host", "0.0.0.0"])
    args = command_parser("serve").parse_args(top.args)
    assert (args.port, args.host, args.config) == (9000, "0.0.0.0", None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["frobnicate"])


def test_simulate_device_delegates_to_the_simulator_cli() -> None:
    from devices import simulator_cli

    args = command_parser("simulate-device").parse_args(["--wav", "hello.wav"])
    assert args.wav is not None
    assert COMMANDS["simulate-device"].run.__module__ == "bot.cli"
    assert callable(simulator_cli.run)


def test_serve_runs_the_real_app_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``xiaoyou serve`` with the real services (no model is loaded until first use)."""
    port = _free_port()
    config = tmp_path / "xiaoyou.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--config", str(config), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = _wait_ready(port, proc)
        assert ready == {"status": "ready", "scheduler_accepting": True}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "xiaoyou started" in out and "xiaoyou stopped" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[str]) -> object:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited early:\n{proc.communicate(timeout=10)[0]}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail("serve did not become ready")


def test_check_config_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    config = tmp_path / "xiaoyou.toml"
    config.write_text(
        '[bot]\nonebot_access_token = "s3cret"\n[admin]\ntoken = "adm1n"\n', encoding="utf-8"
    )
    assert main(["check-config", "--config", str(config), "--port", "9123"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "adm1n" not in out
    shown = json.loads(out)
    assert shown["bot"]["onebot_access_token"] == "**********"
    assert shown["server"]["port"] == 9123


def test_missing_config_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_nonebot_options_from_settings() -> None:
    settings = build_settings(
        server={"port": 9001},
        bot={
            "onebot_access_token": "t",
            "superusers": ["1"],
            "nickname": ["小优"],
            "command_start": ["/"],
        },
    )
    options = nonebot_options(settings)
    assert options["driver"] == "~fastapi"
    assert options["onebot_access_token"] == "t"
    assert (options["port"], options["superusers"], options["nickname"]) == (9001, {"1"}, {"小优"})
