"""Read-only views of the scheduler for the admin API, metrics and the bot's status command."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from core.scheduler.job import Job
from core.scheduler.queues import LaneQueue
from core.scheduler.resources import ResourcePool
from core.scheduler.settings import SchedulerSettings
from core.scheduler.stats import Counters, LoopLagMonitor, TraceBuffer
from core.scheduler.types import JobStatus, Lane, TraceEvent


class Introspection:
    settings: SchedulerSettings
    _pool: ResourcePool
    _lanes: list[LaneQueue]
    _jobs: dict[int, Job]
    _running: dict[int, Job]
    _history: deque[Job]
    _counters: Counters
    _trace: TraceBuffer
    _lag: LoopLagMonitor
    _loop: asyncio.AbstractEventLoop | None
    _state: str
    _started_at: float

    def _cancel(self, job: Job, reason: str) -> bool:
        raise NotImplementedError

    def _now(self) -> float:
        return time.monotonic()

    @property
    def state(self) -> str:
        return self._state

    @property
    def loop_lag(self) -> LoopLagMonitor:
        return self._lag

    def stats(self) -> dict[str, Any]:
        """Counts, latency percentiles, queues, running jobs, resources and loop lag (JSON-able)."""
        now = self._now()
        running_by_lane = dict.fromkeys(Lane, 0)
        for job in self._running.values():
            if job.status is JobStatus.RUNNING:
                running_by_lane[job.spec.lane] += 1
        lanes = self._counters.lane_totals()
        for lane in Lane:
            q = self._lanes[lane]
            row = lanes[lane.name.lower()]
            row["queued"] = q.live - sum(1 for j in q.resumed if j.status is JobStatus.YIELDED)
            row["preempted"] = sum(1 for j in q.resumed if j.status is JobStatus.YIELDED)
            row["running"] = running_by_lane[lane]
            row["owners_waiting"] = sum(1 for n in q.owner_live.values() if n)
        declared = [n for n in self._pool.budget if n not in ("runner", "thread", "process")]
        return {
            "state": self._state,
            "uptime_s": round(time.time() - self._started_at, 3) if self._started_at else 0.0,
            "lanes": lanes,
            "kinds": self._counters.by_lane_kind(),
            "resources": self._pool.snapshot(declared),
            "slots": self._pool.snapshot(("runner", "thread", "process")),
            "running": [job.to_dict(now) for job in self._running.values()],
            "queued_total": sum(q.live for q in self._lanes),
            "loop_lag_ms": self._lag.snapshot(),
            "threads": threading.active_count(),
        }

    def _all_jobs(self) -> Iterator[Job]:
        """Newest first: active jobs, then finished ones from the history ring."""
        active = sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)
        yield from active
        for job in reversed(self._history):
            if job.id not in self._jobs:
                yield job

    def jobs(
        self,
        *,
        status: str | None = None,
        lane: str | None = None,
        kind: str | None = None,
        owner: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[dict[str, object]]:
        now = self._now()
        out: list[dict[str, object]] = []
        skipped = 0
        for job in self._all_jobs():
            if status is not None and job.status.value != status:
                continue
            if lane is not None and job.spec.lane.name.lower() != lane.lower():
                continue
            if kind is not None and job.spec.kind != kind:
                continue
            if owner is not None and job.spec.owner != owner:
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(job.to_dict(now))
            if len(out) >= limit:
                break
        return out

    def job(self, job_id: int) -> dict[str, object] | None:
        job = self._find(job_id)
        return None if job is None else job.to_dict(self._now())

    def cancel(self, job_id: int, reason: str = "cancelled by admin") -> bool:
        """Cancel by id (admin API, bot /cancel). False when unknown or already finished."""
        job = self._find(job_id)
        return False if job is None else self._cancel(job, reason)

    def _find(self, job_id: int) -> Job | None:
        job = self._jobs.get(job_id)
        if job is not None:
            return job
        return next((j for j in self._history if j.id == job_id), None)

    def trace(self, limit: int | None = None) -> list[TraceEvent]:
        return self._trace.events(limit)

    def trace_jsonl(self, limit: int | None = None) -> str:
        return self._trace.jsonl(limit)
