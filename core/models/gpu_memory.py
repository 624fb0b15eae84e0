"""The GPU allocator seam: what is physically on a card, as opposed to what the manager plans.

:class:`core.models.residency.VramLedger` is the plan (which weights are resident, which jobs
hold working memory, what may load next). A :class:`GpuMemory` is the card itself:

- :class:`SimulatedGpu`: a ledger with a hard capacity. Every stand-in backend's load, unload,
  offload, restore and per-job working memory goes through :meth:`GpuMemory.allocate` /
  :meth:`GpuMemory.free`; an allocation past the capacity raises
  :class:`core.errors.GpuOutOfMemory`, exactly where torch's CUDA allocator would. Tests and
  the CPU path of ``bench/gpu_bench.py`` drive the real scheduler and manager against it.
- :class:`CudaGpu`: the real card through ``torch.cuda`` (``mem_get_info`` for the capacity,
  ``memory_allocated`` / ``max_memory_allocated`` for what is used). Torch allocates by itself,
  so ``allocate``/``free`` only record the tag; the measured figures are what the manager
  reports next to its plan (``measured_mb`` of a load) and what the GPU bench compares.

The manager holds one ``GpuMemory`` per CUDA device it uses (``ModelManager(gpus=...)``); the
default is :func:`default_gpu` (a ``CudaGpu``, reading nothing until torch is imported).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import GpuOutOfMemory

_MB = 2**20


class GpuMemory(Protocol):
    """One GPU's memory as the allocator sees it (sizes in MB)."""

    device: str  # "cuda:N"

    def allocate(self, tag: str, size_mb: int) -> None:
        """Take ``size_mb`` under ``tag`` (weights of a model, a job's working memory); raises
        GpuOutOfMemory when the card cannot hold it."""
        ...

    def free(self, tag: str) -> int:
        """Give back what ``tag`` holds; returns the MB freed (0: nothing under that tag)."""
        ...

    def empty_cache(self) -> None:
        """Hand cached, unused blocks back to the driver (after an unload)."""
        ...

    def capacity_mb(self) -> int | None:
        """The card's memory (None: unknown, e.g. no CUDA runtime)."""
        ...

    def used_mb(self) -> float | None:
        """Memory in use now (None: cannot be measured here)."""
        ...

    def peak_mb(self) -> float | None:
        """The most ever in use since the last :meth:`reset_peak`."""
        ...

    def reset_peak(self) -> None: ...


@dataclass(slots=True)
class SimulatedStats:
    allocations: int = 0
    frees: int = 0
    out_of_memory: int = 0


class SimulatedGpu:
    """A ledger with a hard capacity that raises GpuOutOfMemory, like a real card would."""

    def __init__(self, capacity_mb: int, device: str = "cuda:0") -> None:
        self.device = device
        self._capacity_mb = capacity_mb
        self._held: dict[str, int] = {}
        self._used = 0
        self._peak = 0
        self._lock = threading.Lock()  # backends allocate from job threads
        self.stats = SimulatedStats()

    def allocate(self, tag: str, size_mb: int) -> None:
        with self._lock:
            if tag in self._held:
                raise GpuOutOfMemory(f"{self.device}: {tag!r} is already allocated")
            if self._used + size_mb > self._capacity_mb:
                self.stats.out_of_memory += 1
                raise GpuOutOfMemory(
                    f"{self.device}: out of memory allocating {size_mb} MB for {tag!r}"
                    f" ({self._used} of {self._capacity_mb} MB in use: {self._describe()})"
                )
            self._held[tag] = size_mb
            self._used += size_mb
            self._peak = max(self._peak, self._used)
            self.stats.allocations += 1

    def free(self, tag: str) -> int:
        with self._lock:
            size = self._held.pop(tag, 0)
            self._used -= size
            if size:
                self.stats.frees += 1
            return size

    def empty_cache(self) -> None:
        return None

    def capacity_mb(self) -> int | None:
        return self._capacity_mb

    def used_mb(self) -> float | None:
        return float(self._used)

    def peak_mb(self) -> float | None:
        return float(self._peak)

    def reset_peak(self) -> None:
        with self._lock:
            self._peak = self._used

    def held(self) -> dict[str, int]:
        with self._lock:
            return dict(self._held)

    def _describe(self) -> str:
        return ", ".join(f"{t}={mb}" for t, mb in sorted(self._held.items())) or "nothing"


class CudaGpu:
    """A real CUDA device, measured through torch (imported only if something already did)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._index = int(device.split(":")[1])
        self._tags: dict[str, int] = {}

    def _torch(self) -> Any:
        torch: Any = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return None
        return torch

    def allocate(self, tag: str, size_mb: int) -> None:
        self._tags[tag] = size_mb  # torch allocates by itself; this is for the record

    def free(self, tag: str) -> int:
        return self._tags.pop(tag, 0)

    def empty_cache(self) -> None:
        torch = self._torch()
        if torch is not None:
            torch.cuda.empty_cache()

    def capacity_mb(self) -> int | None:
        torch = self._torch()
        if torch is None:
            return None
        _free, total = torch.cuda.mem_get_info(self._index)
        return int(total // _MB)

    def used_mb(self) -> float | None:
        torch = self._torch()
        return None if torch is None else float(torch.cuda.memory_allocated(self._index)) / _MB

    def peak_mb(self) -> float | None:
        torch = self._torch()
        if torch is None:
            return None
        return float(torch.cuda.max_memory_allocated(self._index)) / _MB

    def reset_peak(self) -> None:
        torch = self._torch()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats(self._index)


def default_gpu(device: str) -> GpuMemory:
    """The allocator of a configured ``cuda:N`` device in production: the real card."""
    return CudaGpu(device)
