"""Room on the data dir for the embedded models assembled from PyPI parts.

An assembly that fills the disk to the last byte would also break every state file (quotas,
device activations) that shares it, so :func:`check_room` refuses before writing anything
when the assembled file would not leave ``FREE_MARGIN_BYTES`` free.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import DiskFull

FREE_MARGIN_BYTES = 32 * 1024 * 1024  # left free after an assembly, for the state files


def free_bytes(folder: Path) -> int:
    """Free space of the filesystem that holds ``folder`` (or its nearest existing parent)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_room(folder: Path, needed_bytes: int, what: str) -> None:
    """DiskFull, before writing anything, when ``folder`` cannot take ``needed_bytes`` and
    still keep FREE_MARGIN_BYTES free (filling the disk would break the state files too)."""
    free = free_bytes(folder)
    if free < needed_bytes + FREE_MARGIN_BYTES:
        raise DiskFull(
            f"no room to assemble {what} in {folder}: {free / 1e6:.0f} MB free, it needs"
            f" {needed_bytes / 1e6:.0f} MB plus {FREE_MARGIN_BYTES / 1e6:.0f} MB spare"
        )
