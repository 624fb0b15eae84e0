"""scripts/llama_wheel.sh: the one-time llama-cpp-python wheel build the install runs first."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.deploy.conftest import REPO

SCRIPT = REPO / "scripts" / "llama_wheel.sh"


def run_script(pip: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP": pip, "XIAOYOU_WHEEL_CACHE": str(cache)}
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_multi_word_pip_runs_as_a_command_with_arguments(tmp_path: Path) -> None:
    # the Makefile passes PIP=".venv/bin/python -m pip": several words, one command
    done = run_script("env echo pip", tmp_path / "wheels")
    assert done.returncode == 0, done.stderr
    assert f"pip wheel --no-deps llama-cpp-python==0.3.36 -w {tmp_path / 'wheels'}" in done.stdout


def test_a_cached_wheel_skips_the_build(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    cache.mkdir()
    (cache / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    done = run_script("false", cache)  # would fail if it ran pip at all
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_a_failing_pip_fails_the_script(tmp_path: Path) -> None:
    done = run_script("false", tmp_path / "wheels")
    assert done.returncode != 0
