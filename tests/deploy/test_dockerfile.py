"""The Dockerfile: documented entry command, non-root, health check on /healthz, volumes."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import tomllib
from typing import Any

from bot.cli import COMMANDS
from core.settings import ServerSettings
from tests.deploy.conftest import REPO


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(ins.split(" ", 1)[0].upper(), ins.split(" ", 1)[1]) for ins in logical]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def one(op: str) -> str:
    found = [args for o, args in final_stage() if o == op]
    assert len(found) == 1, (op, found)
    return found[0]


def test_cmd_is_the_documented_serve_command() -> None:
    cmd = json.loads(one("CMD"))
    assert cmd == ["xiaoyou", "serve"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]
    assert scripts["xiaoyou"] == "bot.cli:main"
    serve = argparse.ArgumentParser(prog="xiaoyou serve")
    COMMANDS[cmd[1]].add_arguments(serve)
    args = serve.parse_args([])  # no flags: settings come from the environment and .env
    assert args.config is None and args.host is None and args.port is None
    docs = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "xiaoyou serve" in docs
    assert "xiaoyou serve" in (REPO / "Makefile").read_text(encoding="utf-8")


def test_runs_as_a_non_root_user() -> None:
    user = one("USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    assert re.search(rf"useradd .*\b{re.escape(user)}\b", " ".join(a for _, a in final_stage()))


def test_healthcheck_probes_healthz_on_the_service_port() -> None:
    check = one("HEALTHCHECK")
    assert "/healthz" in check and check.split("CMD", 1)[0].strip().startswith("--interval")
    env = env_vars()
    assert env["XIAOYOU_SERVER__PORT"] in check or "XIAOYOU_SERVER__PORT" in check
    assert one("EXPOSE") == env["XIAOYOU_SERVER__PORT"] == str(ServerSettings().port)


def env_vars() -> dict[str, str]:
    out: dict[str, str] = {}
    for op, args in final_stage():
        if op == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                out[key] = value
    return out


def test_listens_on_all_interfaces_inside_and_loopback_outside() -> None:
    env = env_vars()
    assert env["XIAOYOU_SERVER__HOST"] == "0.0.0.0"
    assert ServerSettings().host == "127.0.0.1"  # the default outside a container
    assert env["HF_HUB_OFFLINE"] == "1"  # nothing downloads weights at run time


def test_models_data_and_config_are_volumes() -> None:
    volumes: Any = json.loads(one("VOLUME"))
    assert {"/data", "/models", "/config"} <= set(volumes)
    assert env_vars()["XIAOYOU_SERVER__DATA_DIR"] == "/data"


def test_copied_sources_exist_and_are_not_docker_ignored() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for op, args in instructions():
        if op != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (REPO / source).exists() or source == "README.md", source
            assert source not in ignored, source


def test_weight_only_packages_match_the_makefile() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^NODEPS := (.+)$", makefile, re.MULTILINE)
    assert match is not None
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    for package in match.group(1).split():
        assert package in dockerfile, package
