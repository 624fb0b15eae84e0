"""Primer prompts' KV caches kept on disk, so a restart does not evaluate them again.

A device's tools are a 609-token prompt (the firmware's seven tools): 7.5–8.6 s on 2 cores.
:mod:`devices.tool_warmup` evaluates it once a device is idle, but a user who speaks right
after the wake word meets it first (firmware emulator, 2026-12-02: "屏幕弄得一点" after a
restart, first token 8.59 s). A primer is a conversation of a system prompt (with or without
tools) and :data:`core.models.llm.WARM_USER_TEXT`; once evaluated, its sequence (KV cache and
tokens, ~12 KB a token for the 0.5B default) is written here and read back into the prompt
cache when the model loads again, so only the very first connection of a board ever pays.

A file is only read back by the same model file (path, size, modification time), the same
llama-cpp-python and the same context size: :func:`identity`. Writes go to a temporary file
renamed into place; a failed write or read is logged and skipped (the prompt is evaluated as
without this). At most ``capacity`` files are kept, the least recently written go first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DiskFull
from core.models.storage import check_room

log = logging.getLogger(__name__)

SUFFIX = ".kv"
_HEADER = struct.Struct("<I")  # the JSON header's length in bytes
Key = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SavedPrompt:
    key: Key  # the primer's messages plus its reply, as the prompt cache keys it
    tokens: np.ndarray  # the evaluated tokens (int32)
    kv: bytes  # llama_state_seq_get_data of sequence 0


def identity(model_path: Path, llama_version: str, n_ctx: int) -> str:
    """What a saved state belongs to: the state of another model or context is not valid."""
    stat = model_path.stat()
    text = f"{model_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{llama_version}|{n_ctx}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SavedPrompts:
    def __init__(self, folder: Path, identity: str, *, capacity: int = 8) -> None:
        self.folder = folder
        self.identity = identity
        self.capacity = capacity

    def _path(self, key: Key) -> Path:
        """Named by the primer without its reply: a primer evaluated again after a restore may
        sample another first token, and is still the same prompt (one file, not two)."""
        prompt = key[:-1] if key and key[-1][0] == "assistant" else key
        digest = hashlib.sha256(json.dumps([self.identity, prompt], ensure_ascii=False).encode())
        return self.folder / f"{self.identity}-{digest.hexdigest()[:16]}{SUFFIX}"

    def has(self, key: Key) -> bool:
        return self._path(key).is_file()

    def write(self, saved: SavedPrompt) -> bool:
        """Keep ``saved`` on disk; False (logged) when it could not be written."""
        if self.capacity <= 0:
            return False
        header = json.dumps(
            {"identity": self.identity, "key": saved.key, "tokens": int(saved.tokens.size)},
            ensure_ascii=False,
        ).encode()
        tokens = np.ascontiguousarray(saved.tokens, dtype=np.int32).tobytes()
        size = _HEADER.size + len(header) + len(tokens) + len(saved.kv)
        target = self._path(saved.key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            check_room(self.folder, size, "a primer's KV cache")
            fd, tmp = tempfile.mkstemp(prefix=".kv-", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(_HEADER.pack(len(header)) + header + tokens + saved.kv)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except (OSError, DiskFull) as exc:
            log.info("primer prompt not saved to %s: %s", self.folder, exc)
            return False
        self._trim()
        return True

    def read_all(self) -> list[SavedPrompt]:
        """This identity's saved primers, newest first; unreadable files are skipped."""
        if not self.folder.is_dir():
            return []
        files = sorted(
            self.folder.glob(f"{self.identity}-*{SUFFIX}"),
            key=lambda p: p.stat().st_mtime_ns,
            reverse=True,
        )
        out = []
        for path in files[: self.capacity]:
            saved = self._read(path)
            if saved is not None:
                out.append(saved)
        return out

    def _read(self, path: Path) -> SavedPrompt | None:
        try:
            data = path.read_bytes()
            (length,) = _HEADER.unpack_from(data)
            start = _HEADER.size + length
            header = json.loads(data[_HEADER.size : start])
            count = int(header["tokens"])
            if header["identity"] != self.identity or len(data) < start + 4 * count:
                raise ValueError("another model's state, or cut short")
            tokens = np.frombuffer(data, dtype=np.int32, count=count, offset=start).copy()
            key = tuple((str(role), str(text)) for role, text in header["key"])
        except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
            log.info("saved primer %s skipped: %s", path.name, exc)
            return None
        return SavedPrompt(key, tokens, data[start + 4 * count :])

    def _trim(self) -> None:
        files = sorted(self.folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime_ns)
        for old in files[: max(0, len(files) - self.capacity)]:
            try:
                old.unlink()
            except OSError as exc:
                log.info("old saved primer %s not removed: %s", old.name, exc)
