"""The connected OneBot accounts, as the admin API lists them (a ``core.services.Directory``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any


class BotDirectory:
    """Live bots come from NoneBot (``get_bots``); this adds when each one connected.

    ``connected``/``disconnected`` are wired to the driver's bot connection hooks by the
    composition root; ``bots`` is injected so the directory is testable without a driver.
    """

    def __init__(
        self, bots: Callable[[], Mapping[str, Any]], clock: Callable[[], float] = time.time
    ) -> None:
        self._bots = bots
        self._clock = clock
        self._since: dict[str, float] = {}

    def connected(self, self_id: str) -> None:
        self._since[self_id] = self._clock()

    def disconnected(self, self_id: str) -> None:
        self._since.pop(self_id, None)

    def snapshot(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for self_id, bot in sorted(self._bots().items()):
            out.append(
                {
                    "self_id": self_id,
                    "adapter": bot.adapter.get_name(),
                    "connected_since": self._since.get(self_id),
                }
            )
        return out
