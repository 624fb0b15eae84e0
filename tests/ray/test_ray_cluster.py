"""The Ray backend on a real two-node Ray cluster, in a network and PID namespace.

``tests/ray/on_cluster`` needs a cluster whose every process and port stays on loopback: Ray
turns 127.0.0.1 into the machine's primary address and ``ray stop`` kills every Ray process on
the host. So this module runs those tests in ``unshare --net --pid --fork --mount-proc`` (only
``lo`` up; root needed) with one session-wide cluster, once, and reports each of them here
under its own name. Marked ``ray``: skipped without Ray (the ``ray`` extra) or without root;
bounded by ``INNER_TIMEOUT_S`` in total.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
INNER = HERE / "on_cluster"
INNER_TIMEOUT_S = 600.0  # 11 cluster tests: ~3 min on a quiet box, 7+ at load 10


def _inner_tests() -> list[str]:
    names = []
    for path in sorted(INNER.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                names.append(f"{path.stem}::{node.name}")
    return names


def _why_not() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'xiaoyou[ray]')"
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs root, unshare and ip for a loopback-only network namespace"
    return None


@pytest.fixture(scope="module")
def inner_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    report = tmp_path_factory.mktemp("ray") / "junit.xml"
    env = {**os.environ, "XIAOYOU_RAY_CLUSTER": "1", "PYTHONPATH": str(ROOT)}
    command = [
        "unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
        sys.executable, "-m", "pytest", str(INNER), "-q", "-p", "no:cacheprovider",
        "-o", "timeout=300", f"--junitxml={report}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=INNER_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the cluster suite took over {INNER_TIMEOUT_S} s: {exc.stdout!r}")
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    if not report.exists():
        pytest.fail(f"the cluster suite did not run (exit {proc.returncode}):\n{output}")
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        key = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                detail = (child.get("message") or "") + "\n" + (child.text or "")
        results[key] = (outcome, detail or output)
    results["__output__"] = ("", output)
    return results


@pytest.mark.timeout(INNER_TIMEOUT_S + 60)
@pytest.mark.parametrize("name", _inner_tests())
def test_on_the_loopback_cluster(inner_results: dict[str, tuple[str, str]], name: str) -> None:
    outcome, detail = inner_results.get(name, ("missing", inner_results["__output__"][1]))
    assert outcome == "passed", f"{name}: {outcome}\n{detail[-4000:]}"
