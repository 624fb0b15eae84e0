"""docker-compose.yml validates with Debian's docker-compose (no engine needed), wired right."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO, TOKEN, active_env

DOCKER_COMPOSE = shutil.which("docker-compose")
USER_SUPPLIED = {"./models", "./config", "./.env"}  # created by the operator (docs/deploy.md)

pytestmark = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="Debian docker-compose is not installed"
)


def compose_config(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` on a copy of the file with ``env`` as the project's .env."""
    assert DOCKER_COMPOSE is not None
    for name in ("docker-compose.yml", "docker-compose.gpu.yml"):
        shutil.copy(REPO / name, project / name)
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(project)}
    return subprocess.run(
        [DOCKER_COMPOSE, "config"], cwd=project, env=clean, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def example_env(**changes: str) -> dict[str, str]:
    env = active_env(REPO / ".env.example")
    env.update(changes)
    return env


def test_compose_validates_and_is_wired(tmp_path: Path) -> None:
    done = compose_config(tmp_path, example_env(XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN=TOKEN))
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) == {"xiaoyou", "gocqhttp", "napcat"}
    app = services["xiaoyou"]
    assert "profiles" not in app
    assert app["environment"]["XIAOYOU_SERVER__HOST"] == "0.0.0.0"
    assert app["environment"]["XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN"] == TOKEN  # from env_file
    gpu = app["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert app["ports"] == ["127.0.0.1:8080:8080/tcp"]  # loopback unless the operator opens it
    targets = {v.split(":")[1] for v in app["volumes"]}
    assert {"/data", "/models", "/config", "/home/xiaoyou/.env"} <= targets
    assert services["gocqhttp"]["profiles"] == ["gocqhttp"]
    assert services["napcat"]["profiles"] == ["napcat"]
    for name in ("gocqhttp", "napcat"):
        assert services[name]["environment"]["XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN"] == TOKEN
        assert "xiaoyou" in services[name]["depends_on"]


def test_cpu_only_box_drops_the_gpu_reservation_and_names_its_image(tmp_path: Path) -> None:
    env = example_env(
        XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN=TOKEN,
        COMPOSE_FILE="docker-compose.yml",
        XIAOYOU_IMAGE="xiaoyou:cpu",
    )
    done = compose_config(tmp_path, env)
    assert done.returncode == 0, done.stderr
    app = yaml.safe_load(done.stdout)["services"]["xiaoyou"]
    assert "deploy" not in app
    assert app["image"] == "xiaoyou:cpu"


def test_napcat_image_is_pinned_to_a_version() -> None:
    raw: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text("utf-8"))
    image = raw["services"]["napcat"]["image"]
    name, _, tag = image.partition(":")
    assert name == "mlikiowa/napcat-docker"
    assert tag.startswith("v") and tag != "latest", image


def test_publish_address_is_configurable(tmp_path: Path) -> None:
    env = example_env(XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN=TOKEN, XIAOYOU_PUBLISH_ADDR="0.0.0.0")
    done = compose_config(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["services"]["xiaoyou"]["ports"] == ["0.0.0.0:8080:8080/tcp"]


def test_compose_refuses_to_start_without_the_access_token(tmp_path: Path) -> None:
    done = compose_config(tmp_path, example_env())  # .env.example as shipped: token empty
    assert done.returncode != 0
    assert "XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN" in done.stderr


def test_bind_mount_sources_exist_in_the_repo() -> None:
    raw: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text("utf-8"))
    for service in raw["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source not in USER_SUPPLIED:
                assert (REPO / source).exists(), source
