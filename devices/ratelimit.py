"""A token bucket: at most ``rate_per_s`` on average, bursts up to ``burst``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _last_s: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = self.burst
        self._last_s = self.clock()

    def take(self, amount: float = 1.0) -> bool:
        """Spend ``amount`` if available now; False (nothing spent) when over the rate."""
        now_s = self.clock()
        self._tokens = min(self.burst, self._tokens + (now_s - self._last_s) * self.rate_per_s)
        self._last_s = now_s
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True
