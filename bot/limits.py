"""Per-user and per-group rate limits for the bot's model work (chat, ``/say``).

One token bucket per (feature, user) and per (feature, group), refilled at
``bot.limits.<feature>.user_per_minute`` / ``group_per_minute`` up to a burst. A message
that finds either bucket empty costs no model work. The first one of such a streak gets one
short Chinese line (a user's own streak: "you are too fast"; a group's: "too many people at
once", once for the whole group), the rest no reply at all until the bucket holds a token
again, so a flood never turns into a reply storm. Superusers are exempt
(``bot.limits.exempt_superusers``). ``/draw`` keeps its own cooldown and daily quota
(:class:`bot.state.QuotaBook`): a drawing is worth counting per day, a chat line is not.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from core.settings import RateLimit

MAX_BUCKETS = 65536  # least recently used buckets are forgotten beyond this (they were full)


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    TELL = "tell"  # over the limit, first time in this streak: say so once
    SILENT = "silent"  # over the limit and already told: no reply at all


@dataclass(slots=True)
class Decision:
    verdict: Verdict
    wait_s: float = 0.0  # until the empty bucket holds a token again
    scope: str = ""  # "user" or "group": whose bucket was empty


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float
    told: bool = False  # the owner was told of this empty streak


class RateLimiter:
    """Token buckets by key, bounded in number; ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.limited: dict[str, int] = {}  # feature -> messages refused since start-up

    def _bucket(self, key: str, burst: int, now_s: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(burst), now_s)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        return bucket

    @staticmethod
    def _refill(bucket: _Bucket, per_minute: float, burst: int, now_s: float) -> None:
        bucket.tokens = min(
            float(burst), bucket.tokens + (now_s - bucket.updated_s) * per_minute / 60
        )
        bucket.updated_s = now_s

    def take(self, feature: str, limit: RateLimit, *, user: str, group: str | None) -> Decision:
        """Spend one token of the user's and (in a group) the group's bucket, or neither."""
        now_s = self._clock()
        checks = [("user", f"{feature}:user:{user}", limit.user_per_minute, limit.user_burst)]
        if group is not None:
            checks.append(
                ("group", f"{feature}:group:{group}", limit.group_per_minute, limit.group_burst)
            )
        buckets = []
        for scope, key, per_minute, burst in checks:
            if per_minute <= 0:  # 0: this limit is off
                continue
            bucket = self._bucket(key, burst, now_s)
            self._refill(bucket, per_minute, burst, now_s)
            if bucket.tokens < 1:
                self.limited[feature] = self.limited.get(feature, 0) + 1
                wait_s = (1 - bucket.tokens) * 60 / per_minute
                # one reply per empty streak of a bucket: a user told once, a group once
                verdict = Verdict.SILENT if bucket.told else Verdict.TELL
                bucket.told = True
                return Decision(verdict, wait_s, scope)
            buckets.append(bucket)
        for bucket in buckets:
            bucket.tokens -= 1
            bucket.told = False
        return Decision(Verdict.ALLOWED)

    def snapshot(self) -> dict[str, object]:
        return {"limited": dict(self.limited), "buckets": len(self._buckets)}


def limited_reply(decision: Decision) -> str:
    """The one line an over-limit sender gets (Chinese, short)."""
    wait_s = max(1, round(decision.wait_s))
    if decision.scope == "group":
        return f"本群现在找我的人太多了，请 {wait_s} 秒后再试。"
    return f"你发得太快了，请 {wait_s} 秒后再试。"
