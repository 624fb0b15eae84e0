"""Disk full for the data dir (issue #16 item 14): state-file errors are reported, not raised
into the request that was already submitted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.state import QuotaBook


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (ENOSPC on write)")
async def test_quota_save_on_a_full_disk_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "bot_quotas.json"
    os.symlink("/dev/full", path.with_name(path.name + ".tmp"))  # every write: ENOSPC
    book = QuotaBook(path=path)
    book.record("draw:1")
    await book.persist()  # raised OSError before: /draw got no reply after submitting
    assert book.state_error is not None and "No space left" in book.state_error
    assert book.used_today("draw:1") == 1  # the count is kept in memory
