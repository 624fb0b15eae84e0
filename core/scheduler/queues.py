"""One lane's queue: FIFO per owner, round-robin across owners, resumed jobs first.

Fairness: one QQ group submitting 50 draws gets one turn per round, so another group's single
draw waits at most one job per other owner, not 50. Removal is lazy: a cancelled or expired
job is marked finished and skipped when it reaches the head; ``live`` counts only live jobs.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from itertools import islice

from core.scheduler.job import Job
from core.scheduler.types import JobStatus


class LaneQueue:
    __slots__ = ("live", "owner_live", "owners", "resumed")

    def __init__(self) -> None:
        self.owners: OrderedDict[str, deque[Job]] = OrderedDict()
        self.owner_live: dict[str, int] = {}
        self.resumed: deque[Job] = deque()  # preempted jobs waiting to continue
        self.live = 0

    def push(self, job: Job) -> None:
        owner = job.spec.owner
        q = self.owners.get(owner)
        if q is None:
            q = self.owners[owner] = deque()
        q.append(job)
        self.owner_live[owner] = self.owner_live.get(owner, 0) + 1
        self.live += 1

    def push_resumed(self, job: Job) -> None:
        self.resumed.append(job)
        self.live += 1

    def discard(self, job: Job) -> None:
        """Account for a queued job that finished without running (it stays until skipped)."""
        self.live -= 1
        if job.status is not JobStatus.YIELDED:
            owner = job.spec.owner
            self.owner_live[owner] -= 1

    def candidates(self, limit: int) -> Iterator[Job]:
        """Head jobs in dispatch order: resumed jobs first, then one per owner in RR order,
        then jobs paused at the end of their owner's slice (round-robin at step level)."""
        resumed = self.resumed
        while resumed and resumed[0].status is not JobStatus.YIELDED:
            resumed.popleft()  # cancelled while yielded: already accounted for
        paused = list(resumed)[:limit]
        yield from (j for j in paused if not j.sliced)
        yield from self._owner_heads(limit)
        yield from (j for j in paused if j.sliced and j.status is JobStatus.YIELDED)

    def _owner_heads(self, limit: int) -> Iterator[Job]:
        seen = 0
        for owner in list(islice(self.owners, 2 * limit)):
            q = self.owners.get(owner)
            if q is None:
                continue
            while q and q[0].status is not JobStatus.QUEUED:
                q.popleft()
            if not q:
                del self.owners[owner]
                if self.owner_live.get(owner) == 0:
                    del self.owner_live[owner]
                continue
            yield q[0]
            seen += 1
            if seen >= limit:
                return

    def first_head(self) -> Job | None:
        """The head a dispatch pass looks at first, or None when resumed jobs come first (or
        the first owner's head was cancelled and awaits lazy removal: let a pass clean up)."""
        if self.resumed:
            return None
        for q in self.owners.values():
            return q[0] if q else None
        return None

    def head_of(self, owner: str) -> Job | None:
        q = self.owners.get(owner)
        return q[0] if q else None

    def take(self, job: Job) -> None:
        """Remove ``job`` (a candidate just yielded by :meth:`candidates`) for dispatch."""
        self.live -= 1
        if job.status is JobStatus.YIELDED:
            self.resumed.remove(job)
            return
        owner = job.spec.owner
        q = self.owners[owner]
        q.popleft()
        self.owner_live[owner] -= 1
        if q:
            self.owners.move_to_end(owner)
        else:
            del self.owners[owner]
            if self.owner_live[owner] == 0:
                del self.owner_live[owner]

    def position(self, job: Job) -> int:
        """Live jobs of this lane that dispatch before ``job`` under round-robin."""
        if job.status is JobStatus.YIELDED:
            return sum(1 for j in self.resumed if j is not job and j.status is JobStatus.YIELDED)
        ahead = sum(1 for j in self.resumed if j.status is JobStatus.YIELDED)
        own = self.owners.get(job.spec.owner)
        if own is None:
            return ahead
        index = 0
        for j in own:
            if j is job:
                break
            if j.status is JobStatus.QUEUED:
                index += 1
        before = True
        for owner in self.owners:
            if owner == job.spec.owner:
                before = False
                continue
            live = self.owner_live.get(owner, 0)
            ahead += min(live, index + 1 if before else index)
        return ahead + index
