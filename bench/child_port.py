"""The benches' child servers: the port handshake (the child prints ``PORT <n>`` once it
listens; the parent reads its stdout until that line) and the source tree of a baseline commit
a child may run from."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path


async def read_port(proc: asyncio.subprocess.Process, timeout_s: float) -> int:
    """The port the child ``proc`` printed; each line must come within ``timeout_s``."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=timeout_s)).decode()
        if not line:
            raise RuntimeError("bench server exited")
        if line.startswith("PORT "):
            return int(line.split()[1])


def snapshot_tree(ref: str | None, script: Path) -> Path:
    """The sources of commit ``ref`` (None: the work tree as it is now) in a temporary
    directory, with the bench ``script`` copied in (so every server takes the same arguments).
    Run a child from it with ``cwd`` and ``PYTHONPATH`` set to it."""
    repo = Path(__file__).resolve().parents[1]
    tree = Path(tempfile.mkdtemp(prefix="devbench-tree-"))
    if ref is not None:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", ref], check=True, capture_output=True
        ).stdout
    else:
        files = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout
        archive = subprocess.run(
            ["tar", "-c", "-C", str(repo), "-T", "-"], input=files, check=True, capture_output=True
        ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    shutil.copy(script, tree / "bench" / script.name)
    shutil.copy(Path(__file__), tree / "bench" / "child_port.py")
    return tree
