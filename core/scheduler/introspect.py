"""Read-only views of a :class:`~core.scheduler.Scheduler` for the admin API, metrics and the
bot's status command: plain functions over its parts (they change nothing)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from core.scheduler.job import Job
from core.scheduler.types import SLOTS, JobStatus, Lane

if TYPE_CHECKING:
    from core.scheduler.scheduler import Scheduler


def stats(s: Scheduler) -> dict[str, Any]:
    """Counts, latency percentiles, queues, running jobs, resources and loop lag (JSON-able)."""
    now = time.monotonic()
    running = s._runners.running
    running_by_lane = dict.fromkeys(Lane, 0)
    for job in running.values():
        if job.status is JobStatus.RUNNING:
            running_by_lane[job.spec.lane] += 1
    queues = s._dispatcher.lanes
    lanes = s._counters.lane_totals()
    for lane in Lane:
        q = queues[lane]
        row = lanes[lane.name.lower()]
        paused = sum(1 for j in q.resumed if j.status is JobStatus.YIELDED)
        row["queued"] = q.live - paused
        row["preempted"] = paused
        row["running"] = running_by_lane[lane]
        row["owners_waiting"] = sum(1 for n in q.owner_live.values() if n)
    pool = s._pool
    declared = [n for n in pool.budget if n not in SLOTS]
    return {
        "state": s.state.value,
        "uptime_s": round(time.time() - s._started_at, 3) if s._started_at else 0.0,
        "lanes": lanes,
        "kinds": s._counters.by_lane_kind(),
        "resources": pool.snapshot(declared),
        "slots": pool.snapshot(SLOTS),
        "running": [job.to_dict(now) for job in running.values()],
        "queued_total": sum(q.live for q in queues),
        "loop_lag_ms": s._lag.snapshot(),
        "threads": threading.active_count(),
    }


def _all_jobs(s: Scheduler) -> Iterator[Job]:
    """Newest first: active jobs, then finished ones from the history ring."""
    active = sorted(s._jobs.values(), key=lambda j: j.id, reverse=True)
    yield from active
    for job in reversed(s._history):
        if job.id not in s._jobs:
            yield job


def select(
    s: Scheduler,
    *,
    status: str | None,
    lane: str | None,
    kind: str | None,
    owner: str | None,
    offset: int,
    limit: int,
) -> list[dict[str, object]]:
    """Jobs (newest first) matching every filter given, as JSON-friendly dicts."""
    now = time.monotonic()
    out: list[dict[str, object]] = []
    skipped = 0
    for job in _all_jobs(s):
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
