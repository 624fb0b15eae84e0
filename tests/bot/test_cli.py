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
from bot.cli import CHECK_CONFIG_SETTINGS_HEADING, COMMANDS, build_parser, command_parser, main
from bot.summary import startup_summary
from core.settings import build_settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
ADMIN_SECRET = "adm1n-s3cret-in-url"
DEVICE_SECRET = "dev1ce-s3cret-in-url"


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
    """``xiaoyou serve`` with the real services, warm start off (no model loads until used): it logs
    the first-run summary, tells devices the host's time zone, keeps tokens out of the log."""
    port = _free_port()
    config = tmp_path / "xiaoyou.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\n[admin]\ntoken = "{ADMIN_SECRET}"\n'
        "[models]\nwarm_start = false\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TZ": "Asia/Shanghai"}
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
        assert isinstance(ready, dict) and ready["status"] == "ready"
        assert ready["scheduler_accepting"] is True and ready["models"]["warm_start"] is False
        base = f"http://127.0.0.1:{port}"
        # old documentation put the admin token in the dashboard URL; devices may send theirs
        assert httpx.get(f"{base}/admin/ui?token={ADMIN_SECRET}", timeout=5).status_code == 200
        stats = httpx.get(f"{base}/admin/stats?authorization=Bearer%20{DEVICE_SECRET}", timeout=5)
        assert stats.status_code == 401
        ota = httpx.post(f"{base}/xiaozhi/ota/", json={}, timeout=5).json()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "xiaoyou started" in out and "xiaoyou stopped" in out
    assert ADMIN_SECRET not in out and DEVICE_SECRET not in out
    assert '"GET /admin/ui?token=*** HTTP/1.1" 200' in out  # the request is logged, redacted
    assert f"ws://127.0.0.1:{port}/onebot/v11/ws" in out
    assert f"http://127.0.0.1:{port}/xiaozhi/ota/" in out
    assert f"http://127.0.0.1:{port}/admin/ui" in out
    assert "管理令牌：已设置" in out and "设备时区：UTC+08:00" in out
    assert ota["server_time"]["timezone_offset"] == 480
    # our modules' INFO records reach the service's log (before: only warnings, bare)
    assert "[INFO] devices.hub | ota from" in out, out[-3000:]


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
    summary, settings_json = out.split(f"\n{CHECK_CONFIG_SETTINGS_HEADING}\n")
    # it begins with the same summary the server logs at start-up
    assert summary.strip() == startup_summary(load_settings(config, server={"port": 9123}))
    assert "ws://127.0.0.1:9123/onebot/v11/ws" in summary and "管理令牌：已设置" in summary
    shown = json.loads(settings_json)
    assert shown["bot"]["onebot_access_token"] == "**********"
    assert shown["server"]["port"] == 9123
    assert isinstance(shown["devices"]["timezone_offset_min"], int)  # the host zone, resolved
    assert main(["check-config", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["admin"]["token"] == "**********"


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
