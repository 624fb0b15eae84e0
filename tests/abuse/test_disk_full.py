"""Disk full for the data dir (issue #16 item 14), on a real full filesystem where possible:
a 1 MiB tmpfs filled to the last byte (needs root and mount; skipped otherwise).

Before: /draw got no reply (the quota save raised after submitting), and every device turn
failed because whisper-base could not be assembled into the data dir. Now state-file errors
are reported (log, /admin/health) and not raised into the request, an assembly that cannot
fit fails at once with DiskFull naming the free and needed space (/readyz says "disk_full"),
and the ASR loads whisper-base from its packages through memory instead."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bot.state import QuotaBook
from core.errors import DiskFull
from core.models import storage
from core.models.asr import AsrSettings
from core.models.llamacpp.embedded import assemble_qwen
from core.models.whisper.asr import WhisperAsr, assemble_whisper_base
from tests.abuse.conftest import StartServer, group_message, onebot_client

AUDIO = Path("/work/shared/audio")
SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on its own 1 MiB tmpfs with no byte left."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full filesystem needs root (mount -t tmpfs)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_quota_save_on_a_full_disk_is_reported_not_raised(full_dir: Path) -> None:
    book = QuotaBook(path=full_dir / "bot_quotas.json")
    book.record("draw:1")
    await book.persist()  # raised OSError before: /draw got no reply after submitting
    assert book.state_error is not None and "No space left" in book.state_error
    assert book.used_today("draw:1") == 1  # the count is kept in memory


def test_whisper_assembly_on_a_full_disk_fails_at_once_and_clearly(full_dir: Path) -> None:
    with pytest.raises(DiskFull, match=r"no room to assemble whisper-base .* MB free"):
        assemble_whisper_base(full_dir / "models")
    assert not (full_dir / "models").exists()  # nothing half-written


def test_enospc_during_an_assembly_is_disk_full(
    full_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The free-space check passes (space taken by another writer meanwhile): the real
    ENOSPC of the write is reported as DiskFull and the partial file removed."""
    monkeypatch.setattr(storage, "free_bytes", lambda folder: 10**12)
    part = tmp_path / "part01.bin"
    part.write_bytes(os.urandom(2 * 1024 * 1024))
    digest = hashlib.sha256(part.read_bytes()).hexdigest()
    with pytest.raises(DiskFull, match="No space left"):
        assemble_qwen(full_dir, parts=[part], sha256=digest, size_bytes=2 * 1024 * 1024)
    assert sorted(p.name for p in full_dir.iterdir()) == ["filler"]
    with pytest.raises(DiskFull, match="No space left"):
        assemble_whisper_base(full_dir / "models")


def _speech() -> np.ndarray:
    folder = AUDIO if AUDIO.is_dir() else SHARED_AUDIO
    path = folder / "en01_piper.wav"
    if not path.is_file():
        pytest.skip("needs the shared test audio")
    with wave.open(str(path)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        rate = wav.getframerate()
    audio = pcm.astype(np.float32) / 32768
    if rate != 16000:
        audio = np.interp(np.arange(0, len(audio), rate / 16000), np.arange(len(audio)), audio)
    return audio.astype(np.float32)


def test_asr_loads_from_memory_when_the_data_dir_is_full(full_dir: Path) -> None:
    """Every device turn failed here: now the ASR still works, and says why it ran from
    memory (logged, kept for admins)."""
    pytest.importorskip("faster_whisper")
    asr = WhisperAsr(AsrSettings(language="en"), cache_dir=full_dir / "models")
    asr.load()
    assert asr.storage_error is not None and "no room" in asr.storage_error
    transcript = asr.transcribe(_speech(), language="en")
    assert "beijing" in transcript.text.lower()


async def test_draw_on_a_full_data_dir_still_replies_and_admins_see_why(
    start_server: StartServer, full_dir: Path
) -> None:
    served = start_server(server={"data_dir": str(full_dir)})
    async with onebot_client(served) as qq:
        await qq.send(group_message("/draw 一只猫", at_bot=False))
        assert await qq.wait_replies(2, timeout_s=15), qq.replies  # queued, then the picture
    assert qq.replies[0].startswith("已加入绘图队列")
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{served.http}/admin/health", headers=served.admin)
    health = answer.json()
    assert health["status"] == "degraded"
    assert "No space left" in health["state_errors"]["bot_quotas"]
    assert health["data_dir"]["low"] is True
    out = served.output()
    assert "quota file" in out and "No space left" in out, out[-2000:]
    assert json.dumps(health)  # JSON-friendly
