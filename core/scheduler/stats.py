"""Counters, latency samples, the trace ring buffer and the event-loop lag monitor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections import deque
from collections.abc import Iterable

from core.scheduler.types import Lane, TraceEvent, TraceKind

COUNTED = (
    "submitted",
    "started",
    "completed",
    "failed",
    "cancelled",
    "expired",
    "rejected",
    "yielded",
)


def percentiles(
    samples: Iterable[float], points: tuple[float, ...] = (50, 95, 99)
) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds (``p50``, ``p95``, ``p99``, ``max``); empty: {}."""
    data = sorted(samples)
    if not data:
        return {}
    out = {
        f"p{p:g}": round(data[max(0, math.ceil(p / 100 * len(data)) - 1)] * 1e3, 3) for p in points
    }
    out["max"] = round(data[-1] * 1e3, 3)
    return out


class KindStats:
    """Counters and wait/run samples of one (lane, kind): looked up once per job at submit,
    then updated with plain attribute increments on the hot path."""

    __slots__ = ("run", "wait", *COUNTED)

    def __init__(self, sample_capacity: int) -> None:
        self.wait: deque[float] = deque(maxlen=sample_capacity)
        self.run: deque[float] = deque(maxlen=sample_capacity)
        self.submitted = self.started = self.completed = self.failed = 0
        self.cancelled = self.expired = self.rejected = self.yielded = 0

    def counts(self) -> dict[str, int]:
        return {event: getattr(self, event) for event in COUNTED}


class Counters:
    """Counts per (lane, kind, event) and wait/run samples per (lane, kind)."""

    __slots__ = ("rows", "sample_capacity")

    def __init__(self, sample_capacity: int) -> None:
        self.sample_capacity = sample_capacity
        self.rows: dict[tuple[Lane, str], KindStats] = {}

    def row(self, lane: Lane, kind: str) -> KindStats:
        row = self.rows.get((lane, kind))
        if row is None:
            row = self.rows[(lane, kind)] = KindStats(self.sample_capacity)
        return row

    def by_lane_kind(self) -> dict[str, dict[str, dict[str, object]]]:
        """{lane: {kind: {submitted: n, ..., wait_ms: {p50..}, run_ms: {p50..}}}}."""
        out: dict[str, dict[str, dict[str, object]]] = {lane.name.lower(): {} for lane in Lane}
        for (lane, kind), stats in sorted(self.rows.items(), key=lambda item: item[0]):
            row: dict[str, object] = dict(stats.counts())
            row["wait_ms"] = percentiles(stats.wait)
            row["run_ms"] = percentiles(stats.run)
            out[lane.name.lower()][kind] = row
        return out

    def lane_totals(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for lane in Lane:
            rows = [r for (ln, _kind), r in self.rows.items() if ln is lane]
            row: dict[str, object] = {ev: sum(getattr(r, ev) for r in rows) for ev in COUNTED}
            row["wait_ms"] = percentiles(v for r in rows for v in r.wait)
            row["run_ms"] = percentiles(v for r in rows for v in r.run)
            out[lane.name.lower()] = row
        return out


class TraceBuffer:
    """A ring buffer of trace events stored as tuples (cheap), materialised on read."""

    __slots__ = ("_events", "record")

    def __init__(self, capacity: int) -> None:
        self._events: deque[tuple[float, TraceKind, int, Lane, str, str, str]] = deque(
            maxlen=capacity
        )
        # the hot path appends a ready tuple (ts, event, job_id, lane, kind, owner, detail)
        self.record = self._events.append

    def add(
        self,
        ts: float,
        event: TraceKind,
        job_id: int,
        lane: Lane,
        kind: str,
        owner: str,
        detail: str = "",
    ) -> None:
        self._events.append((ts, event, job_id, lane, kind, owner, detail))

    def events(self, limit: int | None = None) -> list[TraceEvent]:
        items = list(self._events)
        if limit is not None:
            items = items[-limit:] if limit > 0 else []
        return [TraceEvent(*item) for item in items]

    def jsonl(self, limit: int | None = None) -> str:
        """JSON lines, built straight from the stored tuples (no intermediate objects)."""
        items = list(self._events)
        if limit is not None:
            items = items[-limit:] if limit > 0 else []
        lanes = {lane: lane.name.lower() for lane in Lane}
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        return "".join(
            dumps(
                {
                    "ts": ts,
                    "event": event.value,
                    "job_id": job_id,
                    "lane": lanes[lane],
                    "kind": kind,
                    "owner": owner,
                    "detail": detail,
                }
            )
            + "\n"
            for ts, event, job_id, lane, kind, owner, detail in items
        )


class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeper: the lag every other task suffers."""

    def __init__(self, interval_ms: float, capacity: int = 1024) -> None:
        self.interval_s = interval_ms / 1e3
        self.samples: deque[float] = deque(maxlen=capacity)
        self.max_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="scheduler-loop-lag"
            )

    async def stop(self, timeout_s: float = 1.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout_s)

    def reset(self) -> None:
        self.samples.clear()
        self.max_s = 0.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_s
        while True:
            t0 = loop.time()
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - t0 - interval)
            self.samples.append(lag)
            if lag > self.max_s:
                self.max_s = lag

    def snapshot(self) -> dict[str, float]:
        out = percentiles(self.samples, (50, 99))
        out["max_since_start"] = round(self.max_s * 1e3, 3)
        return out
