"""Settings of the global scheduler (one slice of :class:`core.settings.Settings`)."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator


class SchedulerSettings(BaseModel):
    """Bounds and budgets of the global scheduler.

    ``resources`` are named counted budgets held only while a job runs, for example
    ``{"vram:0": 8192, "cpu": 2}``: VRAM in MB per GPU and CPU slots. Three more are implicit and
    sized from the fields below: ``thread`` (the fixed executor), ``process`` (the fixed process
    pool) and ``runner`` (async jobs running at once). A fourth, ``thread:shared``, is the part
    of the executor that INTERACTIVE and BACKGROUND jobs may hold together: ``realtime_threads``
    threads are left for the REALTIME lane (a paused blocking job keeps its thread, so a thread
    cannot be preempted; it has to be kept free).
    """

    resources: dict[str, int] = Field(default_factory=lambda: {"cpu": 2})
    thread_workers: int = Field(
        8,
        ge=1,
        le=256,
        description="fixed size of the blocking-job executor: the cpu slots, plus jobs paused"
        " by preemption (a paused blocking job keeps its thread), plus headroom for VAD",
    )
    realtime_threads: int = Field(
        2,
        ge=0,
        le=256,
        description="executor threads INTERACTIVE and BACKGROUND jobs never take: a REALTIME"
        " blocking job finds a thread at the next dispatch even when lower lanes (running or"
        " paused) hold all the others (at most thread_workers - 1: lower lanes keep one)",
    )
    process_workers: int = Field(
        0, ge=0, le=64, description="fixed size of the process pool (0: off)"
    )
    runners: int = Field(128, ge=1, le=10_000, description="async jobs that may run at once")
    lane_queue_limit: int = Field(10_000, ge=1, description="queued jobs per lane")
    owner_queue_limit: int = Field(1_000, ge=1, description="queued jobs per owner per lane")
    starvation_bound: int = Field(
        16,
        ge=1,
        description="a waiting lower-lane job is passed over by at most this many dispatches",
    )
    preempt_grace_steps: int = Field(
        2,
        ge=0,
        le=1_000,
        description="a preempted job, once resumed, runs this many more steps before it yields"
        " again (with starvation_bound: lower lanes always make progress under voice load)",
    )
    realtime_next_step: bool = Field(
        True,
        description="a REALTIME job's yield request is honoured at the lower-lane job's next"
        " step (no grace steps), and what that job yields goes to the REALTIME job before any"
        " starved lane: a REALTIME job waits at most one step of one lower-lane job; false:"
        " grace and lane promotion apply to REALTIME waiters too (more lower-lane throughput)",
    )
    owner_slice_s: float = Field(
        0.5,
        ge=0,
        description="a preemptible REALTIME job that has run this long yields at its next step"
        " to another owner's REALTIME job waiting for what it holds (round-robin between devices"
        " at step granularity: a device that talks without pause cannot hold the ASR); 0: off",
    )
    owner_share_half_life_s: float = Field(
        10.0,
        ge=0,
        description="the owner slice pauses another owner's REALTIME job only when that owner"
        " has used the lane more than the waiting owner recently (run time, decaying with this"
        " half-life): a device that talks without pause cannot slice a quiet device's turn; 0:"
        " every slice counts alike",
    )
    drain_timeout_s: float = Field(
        10.0, ge=0, description="shutdown: time to finish work before cancelling"
    )
    cancel_timeout_s: float = Field(
        5.0, ge=0, description="shutdown: time for cancelled jobs to stop"
    )
    stream_buffer: int = Field(32, ge=1, description="default chunks buffered per streaming job")
    trace_capacity: int = Field(10_000, ge=16, description="trace events kept in the ring buffer")
    history_capacity: int = Field(2_000, ge=16, description="finished jobs kept for the admin API")
    sample_capacity: int = Field(
        2_048, ge=16, description="wait/run samples kept per lane and kind"
    )
    loop_lag_interval_ms: float = Field(20.0, gt=0, description="event-loop lag probe period")
    prewarm: bool = Field(True, description="start every executor thread/process at start-up")

    @model_validator(mode="after")
    def _check_resources(self) -> SchedulerSettings:
        for name, amount in self.resources.items():
            if amount < 0:
                raise ValueError(f"resource {name!r} has a negative budget {amount}")
            if name in {"thread", "thread:shared", "process", "runner"}:
                raise ValueError(f"resource name {name!r} is reserved")
        return self

    @property
    def shared_threads(self) -> int:
        """Threads INTERACTIVE and BACKGROUND jobs may hold together (at least one)."""
        return max(1, self.thread_workers - self.realtime_threads)
