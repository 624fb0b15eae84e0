"""The bot's bounded per-user bookkeeping: submitted jobs, chat context, cooldowns and quotas.

Instances live in :class:`bot.runtime.BotRuntime` (owned by the app); every structure here is
bounded so a busy group cannot grow memory without limit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.errors import ConfigError, QuotaExceeded
from core.models.llm import ChatMessage

log = logging.getLogger(__name__)

MAX_TRACKED_JOBS_PER_USER = 64  # a user rarely has more than a few jobs in flight
MAX_CONVERSATIONS = 4096  # least recently used conversations are forgotten beyond this
MAX_QUOTA_KEYS = 65536


class JobTracker:
    """Which scheduler jobs each QQ user submitted, so ``/cancel`` only touches their own."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[int, Any]] = {}  # user_id -> {job id: JobHandle}

    def add(self, user_id: str, handle: Any) -> None:
        jobs = self._by_user.setdefault(user_id, {})
        for job_id in [i for i, h in jobs.items() if h.done()]:
            del jobs[job_id]
        while len(jobs) >= MAX_TRACKED_JOBS_PER_USER:
            del jobs[next(iter(jobs))]
        jobs[handle.id] = handle

    def active(self, user_id: str) -> list[int]:
        """Ids of this user's jobs that have not finished, oldest first."""
        jobs = self._by_user.get(user_id, {})
        return [job_id for job_id, handle in jobs.items() if not handle.done()]

    def forget(self, user_id: str, job_id: int) -> None:
        self._by_user.get(user_id, {}).pop(job_id, None)


class ConversationStore:
    """Bounded chat context per conversation key (a group, or a user in private chat)."""

    def __init__(self, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._max = max_conversations
        self._turns: OrderedDict[str, deque[ChatMessage]] = OrderedDict()

    def history(self, key: str) -> list[ChatMessage]:
        turns = self._turns.get(key)
        if turns is None:
            return []
        self._turns.move_to_end(key)
        return list(turns)

    def extend(self, key: str, messages: Iterable[ChatMessage], *, max_messages: int) -> None:
        turns = self._turns.get(key)
        if turns is None or turns.maxlen != max_messages:
            turns = deque(turns or (), maxlen=max_messages)
            self._turns[key] = turns
        turns.extend(messages)
        self._turns.move_to_end(key)
        while len(self._turns) > self._max:
            self._turns.popitem(last=False)

    def reset(self, key: str) -> bool:
        return self._turns.pop(key, None) is not None


class QuotaBook:
    """Per-key cooldown and daily count (days in local time). ``clock``/``today`` are
    injectable for tests. With a ``path``, today's counts survive restarts (cooldowns do not):
    they are loaded once at construction and written by :meth:`persist`."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], dt.date] = dt.date.today,
        path: Path | None = None,
    ) -> None:
        self._clock = clock
        self._today = today
        self._last_s: OrderedDict[str, float] = OrderedDict()
        self._day = today()
        self._count: dict[str, int] = {}
        self.path = path
        self.state_error: str | None = None  # the last failed write, for admins
        self._write_lock = asyncio.Lock()
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the quota file {path}: {exc}") from exc
        if isinstance(data, dict) and data.get("day") == self._day.isoformat():
            self._count = {str(k): int(v) for k, v in dict(data.get("counts", {})).items()}

    def _roll(self) -> None:
        day = self._today()
        if day != self._day:
            self._day = day
            self._count.clear()

    def check(self, key: str, *, cooldown_s: float, daily_limit: int) -> None:
        """Raise QuotaExceeded when ``key`` is cooling down or used up today; else return."""
        self._roll()
        last = self._last_s.get(key)
        if last is not None:
            wait_s = cooldown_s - (self._clock() - last)
            if wait_s > 0:
                raise QuotaExceeded(f"冷却中，请 {wait_s:.0f} 秒后再试")
        if daily_limit > 0 and self._count.get(key, 0) >= daily_limit:
            raise QuotaExceeded(f"今天的 {daily_limit} 次额度已用完，明天再来吧", retryable=False)

    def record(self, key: str) -> float | None:
        """Count one use now; returns the previous use's time, for :meth:`refund`."""
        self._roll()
        previous = self._last_s.get(key)
        self._last_s[key] = self._clock()
        self._last_s.move_to_end(key)
        while len(self._last_s) > MAX_QUOTA_KEYS:
            self._last_s.popitem(last=False)
        self._count[key] = self._count.get(key, 0) + 1
        return previous

    def refund(self, key: str, previous: float | None) -> None:
        """Undo :meth:`record` for a job that failed: the count and the cooldown go back."""
        self._roll()
        count = self._count.get(key, 0)
        if count > 1:
            self._count[key] = count - 1
        else:
            self._count.pop(key, None)
        if previous is None:
            self._last_s.pop(key, None)
        else:
            self._last_s[key] = previous

    def used_today(self, key: str) -> int:
        self._roll()
        return self._count.get(key, 0)

    async def persist(self) -> None:
        """Write today's counts (off the event loop; writes happen in order, atomically).
        A failed write (disk full) is logged and kept in :attr:`state_error`, never raised:
        the request that counted has been submitted and must still get its reply."""
        if self.path is None:
            return
        async with self._write_lock:
            payload = json.dumps({"day": self._day.isoformat(), "counts": self._count})
            try:
                await asyncio.to_thread(_write_atomic, self.path, payload)
            except OSError as exc:  # disk full, read-only: the counts stay valid in memory
                self.state_error = f"cannot write {self.path}: {exc}"
                log.error("quota file: %s (counts kept in memory)", self.state_error)
                return
            self.state_error = None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
