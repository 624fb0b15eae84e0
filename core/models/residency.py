"""VRAM as residency: the model manager's plan of what is on each GPU (MB).

A model's weights hold their footprint from load to unload (or offload), once, however many
jobs use them; each job holds its model's ``working_mb`` while it runs (kept while it is
paused: its latents / KV cache stay on the card). Nothing is loaded, restored or started past
``budget_mb``: the manager first unloads idle models (least recently used first), then
offloads the weights of models whose every job is paused, and otherwise the job waits in
:attr:`VramLedger.waiting` (FIFO; its position is visible in :meth:`VramLedger.to_dict`).

Plain data; every method runs under the manager's lock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class VramWaiter:
    """A job waiting for room on a GPU (its model's weights and/or its working memory)."""

    seq: int
    model: str
    need_mb: int


@dataclass(slots=True)
class VramLedger:
    device: str
    budget_mb: int
    weights: dict[str, int] = field(default_factory=dict)  # resident model -> MB
    offloaded: dict[str, int] = field(default_factory=dict)  # model -> MB, weights in host RAM
    working: dict[int, tuple[str, int]] = field(default_factory=dict)  # hold id -> (model, MB)
    waiting: list[VramWaiter] = field(default_factory=list)
    peak_mb: int = 0
    loads: int = 0
    evictions: int = 0
    offloads: int = 0
    restores: int = 0
    last_offload_s: float | None = None
    last_restore_s: float | None = None
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def weights_mb(self) -> int:
        return sum(self.weights.values())

    @property
    def working_mb(self) -> int:
        return sum(mb for _model, mb in self.working.values())

    @property
    def used_mb(self) -> int:
        return self.weights_mb + self.working_mb

    @property
    def free_mb(self) -> int:
        return self.budget_mb - self.used_mb

    def fits(self, need_mb: int) -> bool:
        return self.used_mb + need_mb <= self.budget_mb

    def add_weights(self, model: str, size_mb: int) -> None:
        self.offloaded.pop(model, None)
        self.weights[model] = size_mb
        self._note_peak()

    def drop_weights(self, model: str) -> None:
        self.weights.pop(model, None)
        self.offloaded.pop(model, None)

    def offload(self, model: str) -> None:
        self.offloaded[model] = self.weights.pop(model)
        self.offloads += 1

    def add_working(self, hold_id: int, model: str, size_mb: int) -> None:
        self.working[hold_id] = (model, size_mb)
        self._note_peak()

    def drop_working(self, hold_id: int) -> None:
        self.working.pop(hold_id, None)

    def enqueue(self, model: str, need_mb: int) -> VramWaiter:
        waiter = VramWaiter(next(self._seq), model, need_mb)
        self.waiting.append(waiter)
        return waiter

    def first(self, waiter: VramWaiter) -> bool:
        """FIFO: only the oldest waiter may take room (a big load is not starved by small)."""
        return bool(self.waiting) and self.waiting[0] is waiter

    def leave(self, waiter: VramWaiter) -> None:
        if waiter in self.waiting:
            self.waiting.remove(waiter)

    def _note_peak(self) -> None:
        self.peak_mb = max(self.peak_mb, self.used_mb)

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "budget_mb": self.budget_mb,
            "used_mb": self.used_mb,
            "free_mb": self.free_mb,
            "peak_mb": self.peak_mb,
            "weights_mb": dict(self.weights),
            "offloaded_mb": dict(self.offloaded),
            "working_mb": self.working_mb,
            "jobs_working": len(self.working),
            "waiting": [
                {"position": i + 1, "model": w.model, "need_mb": w.need_mb}
                for i, w in enumerate(self.waiting)
            ],
            "loads": self.loads,
            "evictions": self.evictions,
            "offloads": self.offloads,
            "restores": self.restores,
            "last_offload_s": _ms3(self.last_offload_s),
            "last_restore_s": _ms3(self.last_restore_s),
        }


def _ms3(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
