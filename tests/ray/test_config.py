"""Ray is configuration: single-box mode never imports it; an address and ``ray.workers``
decide which models run on the cluster (no cluster needed for these tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.cli import _settings, command_parser
from core.workers.ray_pool import node_resource, worker_resource
from core.workers.ray_settings import RaySettings, vram_resource

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import asyncio, json, sys
from core.settings import build_settings
from bot.app import build_services, create_app

async def main(overrides):
    settings = build_settings(**overrides)
    services, _hub = build_services(settings)
    await services.scheduler.start()
    await services.scheduler.stop()
    create_app(settings, services=services)
    return {
        "ray_imported": "ray" in sys.modules,
        "cluster": services.cluster is not None,
        "warm": services.models._warm.models,
    }

print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
"""


def _probe(overrides: dict[str, object]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(overrides)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_single_box_mode_never_imports_ray() -> None:
    result = _probe({})
    assert result == {"ray_imported": False, "cluster": False, "warm": ["vad", "asr", "llm", "tts"]}


def test_a_ray_address_builds_the_pool_without_importing_ray_before_it_starts() -> None:
    """Ray is imported by the pool's start (joining the cluster), not by building the app; the
    models hosted on the cluster leave the local warm start."""
    ray = {"address": "10.0.0.5:6379", "workers": [{"name": "chat", "model": "llm"}]}
    result = _probe({"ray": ray})
    assert result == {"ray_imported": False, "cluster": True, "warm": ["vad", "asr", "tts"]}


def test_serve_takes_a_ray_address_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XIAOYOU_RAY__ADDRESS", raising=False)
    args = command_parser("serve").parse_args(["--ray-address", "192.168.1.10:6379"])
    assert _settings(args).ray.address == "192.168.1.10:6379"
    assert _settings(command_parser("serve").parse_args([])).ray.address is None


def test_ray_settings_name_the_resources_and_refuse_two_entries_for_one_model() -> None:
    settings = RaySettings(
        address="h:6379",
        workers=[{"name": "draw", "model": "sd", "vram_mb": 6000, "gpu": 1, "node": "gpu1"}],
        nodes={"gpu1": {"slots": 2}},
    )
    worker = settings.workers[0]
    assert worker.ray_resources() == {"vram_mb_gpu1": 6000.0}
    assert worker.label_selector() == {"xiaoyou-node": "gpu1"}
    assert vram_resource(None) == vram_resource(0) == "vram_mb"
    assert settings.node_slots("gpu1") == 2 and settings.node_slots("other") == 1
    assert (worker_resource("draw"), node_resource("gpu1")) == ("worker:draw", "ray-node:gpu1")
    with pytest.raises(ValidationError):
        RaySettings(workers=[{"name": "a", "model": "llm"}, {"name": "b", "model": "llm"}])
    with pytest.raises(ValidationError):
        RaySettings(workers=[{"name": "a", "model": "vad"}])  # stays on the front
