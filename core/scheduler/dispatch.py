"""The dispatcher: which queued jobs start now, and which running ones pause for them.

It owns the lane queues, the starvation counters, the set of running preemptible jobs and
the counted resources' accounting (acquire on start and resume, release on pause and finish).
It never runs a job: a job that may start is handed to the :class:`~core.scheduler.execution.
Runners`. Dispatch is synchronous (:meth:`Dispatcher.pump`), run whenever something changes: a
submit, a finish, a cancel, a preemption. It walks the lanes in priority order; within a lane it
looks at the head job of each owner in round-robin order. A job starts only when all its
resources fit after subtracting what blocked higher-priority jobs are waiting for (so lower
lanes can backfill without delaying them). A lane passed over ``starvation_bound`` times
while non-empty is looked at first once. A blocked job asks running preemptible jobs of
lower lanes holding what it lacks to yield at their next step (:meth:`Dispatcher.pause` is
that step); a job resumed after a yield runs ``preempt_grace_steps`` more steps before it
pauses again (it always makes progress), except for a REALTIME job: with
``realtime_next_step`` (the default) a REALTIME job's yield request is honoured at the very next
step (no grace), and what a job yields to a waiting REALTIME job goes to that job before any
promoted lane, so a REALTIME job waits for at most one step of one lower-lane job.
Within the REALTIME lane a job that has run its ``owner_slice_s`` pauses for another
owner's waiting job only when its owner has used the lane more recently than that owner (run
time decaying with ``owner_share_half_life_s``): a device that talks without pause gets its
share, not the quiet device's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from core.scheduler.job import Job
from core.scheduler.queues import LaneQueue
from core.scheduler.resources import ResourcePool
from core.scheduler.settings import SchedulerSettings
from core.scheduler.types import QUEUED, RUNNING, STARTED, JobStatus, Lane, TraceKind

if TYPE_CHECKING:
    from core.scheduler.execution import Runners

SCAN_LIMIT = 16  # head jobs examined per lane and pass: bounds dispatch cost with huge queues
BLOCKED_LIMIT = 4  # blocked heads per lane and pass before the pass leaves the lane
_ORDER = tuple(int(lane) for lane in Lane)
_NONE: frozenset[int] = frozenset()
Record = Callable[[tuple[float, TraceKind, int, Lane, str, str, str]], None]


class Dispatcher:
    __slots__ = (
        "_bound",
        "_grace_steps",
        "_half_life_s",
        "_on_deadline",
        "_pool",
        "_realtime_next_step",
        "_record",
        "_runners",
        "_slice_s",
        "_slice_timer",
        "_used",
        "bypassed",
        "dirty",
        "lanes",
        "preemptible",
        "preempting",
        "pumping",
        "repump",
    )

    def __init__(
        self,
        settings: SchedulerSettings,
        pool: ResourcePool,
        record: Record,
        on_deadline: Callable[[Job], None],
    ) -> None:
        self._pool = pool
        self._record = record
        self._on_deadline = on_deadline  # a queued job found past its deadline during a pass
        self._bound = settings.starvation_bound
        self._grace_steps = settings.preempt_grace_steps
        self._realtime_next_step = settings.realtime_next_step
        self._slice_s = settings.owner_slice_s
        self._slice_timer: asyncio.TimerHandle | None = None  # a pass when a slice ends
        self._half_life_s = settings.owner_share_half_life_s
        # REALTIME owner -> (run seconds, decayed to the time noted beside them)
        self._used: dict[str, tuple[float, float]] = {}
        self._runners: Runners | None = (
            None  # bind(): the runners and the dispatcher know each other
        )
        self.lanes = [LaneQueue() for _ in Lane]
        self.bypassed = [0 for _ in Lane]
        self.preemptible: dict[int, Job] = {}  # running preemptible jobs (preemption victims)
        self.preempting: dict[int, Job] = {}  # queued REALTIME jobs a running job yields to
        self.pumping = False
        self.repump = False
        self.dirty = True  # something may have become startable since the last pass

    def bind(self, runners: Runners) -> None:
        """The runners a startable job is handed to (they call :meth:`finished` back)."""
        self._runners = runners

    def close(self) -> None:
        if self._slice_timer is not None:
            self._slice_timer.cancel()
            self._slice_timer = None

    @property
    def queued(self) -> bool:
        lanes = self.lanes
        return bool(lanes[0].live or lanes[1].live or lanes[2].live)

    def can_start_directly(self, index: int, needs: Mapping[str, int]) -> bool:
        """Nothing queued at this lane or above, no starved lane below, and the job fits."""
        if self.pumping:
            return False
        lanes, bypassed, bound = self.lanes, self.bypassed, self._bound
        for k in range(len(lanes)):
            live = lanes[k].live
            if live and (k <= index or bypassed[k] >= bound):
                return False
        return self._pool.fits(needs)

    # -- dispatch -------------------------------------------------------------------------------
    def pump(self) -> None:
        if self.pumping:
            self.repump = True  # something changed during a pass: look once more afterwards
            return
        self.pumping = True
        try:
            self.repump = True
            while self.repump:
                self.repump = False
                self._dispatch_pass()
        finally:
            self.pumping = False

    def _hand_off(self, freed: Mapping[str, int]) -> bool:
        """A finished job just gave back ``freed`` and nothing else changed since the last pass
        (the caller checks ``_dirty``): every head that pass looked at was blocked. If the
        first head a pass would look at now needs exactly ``freed``, a pass would start it and
        find everything else still blocked by the same free resources; start it here instead
        of running the pass. False: run a full pass (also after starting the head when the
        owner's next job, a head no pass has looked at yet, may fit)."""
        if self.pumping:
            return False
        lanes, bypassed, bound = self.lanes, self.bypassed, self._bound
        index = 0 if lanes[0].live else 1 if lanes[1].live else 2
        for lower in range(index + 1, len(lanes)):
            if bypassed[lower] >= bound and lanes[lower].live:
                return False  # a starved lane goes first: the full pass handles that
        queue = lanes[index]
        head = queue.first_head()
        if head is None or head.status is not QUEUED:
            return False
        if head.needs is not freed and head.needs != freed:
            return False
        if head.deadline_at is not None and time.monotonic() >= head.deadline_at:
            return False
        queue.take(head)
        self.start(head)
        self.account_bypass(index, head)
        # the owner's next job is a head no pass has seen: if it might fit, let a pass decide
        following = queue.head_of(head.spec.owner)
        return following is None or (
            following.status is QUEUED and not self._pool.fits(following.needs)
        )

    def _dispatch_pass(self) -> None:
        """Start everything that may start now. Resources only shrink during a pass, so once
        a lane has nothing more that fits, later lanes cannot change that: one pass suffices."""
        self.dirty = False
        lanes, bound, bypassed = self.lanes, self._bound, self.bypassed
        if not (lanes[0].live or lanes[1].live or lanes[2].live):
            return
        if (bypassed[1] >= bound and lanes[1].live) or (bypassed[2] >= bound and lanes[2].live):
            starved = [i for i in (1, 2) if bypassed[i] >= bound and lanes[i].live]
            promoted: frozenset[int] = frozenset(starved)
            order = [*starved, *(i for i in _ORDER if i not in promoted)]
            if self.preempting:  # what was yielded to a REALTIME job is its own, not a lane's
                order = [0, *(i for i in order if i != 0)]
        else:
            promoted, order = _NONE, list(_ORDER)
        reserved: dict[str, int] = {}
        blocked_ids: set[int] = set()
        now = time.monotonic()
        for index in order:
            queue = lanes[index]
            dispatched = True
            blocked_here = 0
            while dispatched and queue.live and blocked_here < BLOCKED_LIMIT:
                dispatched = False
                for job in queue.candidates(SCAN_LIMIT):
                    if job.id in blocked_ids:
                        continue
                    if (
                        job.status is JobStatus.QUEUED
                        and job.deadline_at is not None
                        and now >= job.deadline_at
                    ):
                        self._on_deadline(job)
                        continue
                    resuming = job.status is JobStatus.YIELDED
                    needs = job.declared if resuming else job.needs
                    if self._pool.fits(needs, reserved):
                        queue.take(job)
                        self._resume(job) if resuming else self.start(job)
                        self.account_bypass(index, job)
                        dispatched = True
                        continue
                    blocked_ids.add(job.id)
                    blocked_here += 1
                    if index not in promoted:
                        if self.preemptible:
                            self._maybe_preempt(job, needs)
                        for name, amount in needs.items():
                            reserved[name] = reserved.get(name, 0) + amount
                    if blocked_here >= BLOCKED_LIMIT:
                        break

    def account_bypass(self, index: int, job: Job) -> None:
        """A job of lane ``index`` started: lower lanes with queued jobs were passed over once,
        unless the job declares no resources (VAD: it takes nothing a lower lane waits for;
        counting its frequent dispatches would promote a chat lane every second and let it take
        back what a waiting voice job just preempted)."""
        bypassed, lanes = self.bypassed, self.lanes
        bypassed[index] = 0
        if not job.spec.resources:
            return
        for lower in range(index + 1, len(lanes)):
            if lanes[lower].live:
                bypassed[lower] += 1

    def start(self, job: Job) -> None:
        if job.preempting:
            job.preempting = False
            self.preempting.pop(job.id, None)
        self._pool.acquire(job.needs)
        job.holding = True
        job.status = RUNNING
        job.started_at = job.slice_at = now = time.monotonic()
        spec = job.spec
        if spec.preemptible:
            self.preemptible[job.id] = job
        stats = job.stats
        stats.started += 1
        stats.wait.append(now - job.submitted_at)
        self._record((time.time(), STARTED, job.id, spec.lane, spec.kind, spec.owner, ""))
        runners = self._runners
        assert runners is not None, "bind() the runners before dispatching"
        runners.assign(job)

    def finished(self, job: Job) -> None:
        """The job's code has returned (its runner is idle again): give back everything it
        holds and start what may start now."""
        freed = job.needs if job.holding else None
        if job.spec.lane is Lane.REALTIME and job.holding:
            self._charge(job, time.monotonic())
        if job.holding:
            self._pool.release(job.needs)  # declared resources and the slot
            job.holding = False
        else:  # preempted and then stopped: only the slot and keep_on_yield are still held
            self._pool.release(job.kept())
        if job.spec.preemptible:
            self.preemptible.pop(job.id, None)
        lanes = self.lanes
        if not (lanes[0].live or lanes[1].live or lanes[2].live):
            self.dirty = True  # nothing queued: the next job that queues runs a pass
            return
        if self.dirty or freed is None or not self._hand_off(freed):
            self.dirty = True
            self.pump()

    def discard(self, job: Job) -> None:
        """A queued or paused job was stopped: it leaves its lane (lazily), and a paused one's
        checkpoint wakes up to raise the error."""
        self.lanes[job.spec.lane].discard(job)
        if job.preempting:
            job.preempting = False
            self.preempting.pop(job.id, None)
        self.dirty = True  # the owner's next job may now be a head
        if job.resume is not None and not job.resume.done():
            job.resume.set_result(None)

    def _resume(self, job: Job) -> None:
        self._pool.acquire(job.declared)
        job.holding = True
        job.status = JobStatus.RUNNING
        job.grace = self._grace_steps  # the starvation bound of preemption
        job.yield_for_realtime = False
        job.slice_at = time.monotonic()
        job.sliced = False
        spec = job.spec
        self._record((time.time(), TraceKind.RESUMED, job.id, spec.lane, spec.kind, spec.owner, ""))
        if job.resume is not None and not job.resume.done():
            job.resume.set_result(None)

    def _maybe_preempt(self, blocked: Job, needs: Mapping[str, int]) -> None:
        """Ask running preemptible jobs that hold what ``blocked`` lacks (and give it back when
        paused) to yield at their next step: jobs of lower lanes, and in the REALTIME lane jobs
        of other owners that have run ``owner_slice_s`` since their last start or resume."""
        short = self._pool.shortfall(needs)
        lane, owner = blocked.spec.lane, blocked.spec.owner
        realtime = lane is Lane.REALTIME
        sliced = self._slice_s > 0 and realtime
        first = realtime and self._realtime_next_step and blocked.status is QUEUED
        now = time.monotonic()
        for name, missing in short.items():
            victims = []
            for j in self.preemptible.values():
                if not j.holding or j.declared.get(name, 0) <= 0:
                    continue
                if j.spec.lane > lane:
                    victims.append(j)
                elif sliced and j.spec.lane == lane and j.spec.owner != owner:
                    # its slice is over and its owner used the lane more than the waiting one
                    due_s = max(
                        j.slice_at + self._slice_s - now,
                        self._usage(owner, now) - self._share(j, now),
                    )
                    if due_s <= 0:
                        victims.append(j)
                    else:
                        self._pass_at(due_s)
            victims.sort(key=lambda j: (-j.spec.lane, -j.id))
            for victim in victims:
                if missing <= 0:
                    break
                missing -= victim.declared[name]
                if first and victim.spec.lane > lane:
                    victim.yield_for_realtime = True  # no grace steps: it pauses at its next
                    if not blocked.preempting:
                        blocked.preempting = True
                        self.preempting[blocked.id] = blocked
                if victim.spec.lane > lane:
                    victim.sliced = False  # a higher lane needs it: it resumes first in its lane
                elif not victim.yield_requested:
                    victim.sliced = True  # its owner's slice is over: it resumes after the others
                if not victim.yield_requested:
                    victim.yield_requested = True
                    if victim.channel is not None:  # waiting in emit: pause there instead
                        victim.channel.wake_producer()
                    s = victim.spec
                    self._record(
                        (
                            time.time(),
                            TraceKind.YIELDED,
                            victim.id,
                            s.lane,
                            s.kind,
                            s.owner,
                            "requested",
                        )
                    )

    def _usage(self, owner: str, now: float) -> float:
        """The owner's recent REALTIME run time (seconds, decayed); 0 when shares are off."""
        used = self._used.get(owner)
        if used is None or self._half_life_s <= 0:
            return 0.0
        seconds, at = used
        return float(seconds * 0.5 ** ((now - at) / self._half_life_s))

    def _share(self, job: Job, now: float) -> float:
        """What ``job``'s owner has used, counting the running job's current stretch."""
        return self._usage(job.spec.owner, now) + (now - job.slice_at)

    def _charge(self, job: Job, now: float) -> None:
        """A REALTIME job stops running (pause or finish): its stretch joins its owner's use."""
        if self._half_life_s <= 0 or not job.spec.resources:
            return
        used = self._used
        used[job.spec.owner] = (self._share(job, now), now)
        if len(used) > 1024:  # many short-lived owners: forget the ones with little use
            for name in [n for n in used if self._usage(n, now) < 0.01]:
                del used[name]

    def _pass_at(self, delay_s: float) -> None:
        """Run a dispatch pass in ``delay_s`` (a running job's slice ends then)."""
        timer = self._slice_timer
        if timer is not None:
            if timer.when() <= asyncio.get_running_loop().time() + delay_s:
                return
            timer.cancel()
        self._slice_timer = asyncio.get_running_loop().call_later(delay_s, self._slice_due)

    def _slice_due(self) -> None:
        self._slice_timer = None
        self.dirty = True
        self.pump()

    async def pause(self, job: Job) -> None:
        """At a checkpoint of a job asked to yield: give its resources back until re-admitted."""
        if not job.yield_requested or job.status is not JobStatus.RUNNING:
            return
        if job.grace > 0 and not job.yield_for_realtime:
            job.grace -= 1  # resumed a moment ago: a few steps of progress before pausing again
            return
        job.yield_requested = job.yield_for_realtime = False
        if job.spec.lane is Lane.REALTIME:
            self._charge(job, time.monotonic())
        self._pool.release(job.declared)
        job.holding = False
        job.status = JobStatus.YIELDED
        job.yields += 1
        spec = job.spec
        job.stats.yielded += 1
        self._record((time.time(), TraceKind.YIELDED, job.id, spec.lane, spec.kind, spec.owner, ""))
        self.lanes[spec.lane].push_resumed(job)
        job.resume = asyncio.get_running_loop().create_future()
        self.dirty = True
        self.pump()
        try:
            await job.resume
        finally:
            job.resume = None
