"""Named counted resources held only while a job runs (VRAM MB per GPU, CPU slots, ...).

The "VRAM mutex" of the design documents is the special case of two jobs whose VRAM needs
do not fit the budget together: the pool never admits both at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from core.errors import ResourceUnsatisfiable


class ResourcePool:
    __slots__ = ("budget", "in_use")

    def __init__(self, budget: Mapping[str, int]) -> None:
        self.budget: dict[str, int] = dict(budget)
        self.in_use: dict[str, int] = dict.fromkeys(self.budget, 0)

    def define(self, name: str, budget: int) -> None:
        """Add a named budget (e.g. ``model:llm`` = a model's concurrency); a redefinition
        changes the budget and keeps what is in use."""
        if budget < 0:
            raise ResourceUnsatisfiable(f"negative budget {budget} for resource {name!r}")
        self.budget[name] = budget
        self.in_use.setdefault(name, 0)

    def validate(self, needs: Mapping[str, int]) -> None:
        """Raise if ``needs`` can never be met (unknown resource or more than the budget)."""
        for name, amount in needs.items():
            if amount < 0:
                raise ResourceUnsatisfiable(f"negative need {amount} for resource {name!r}")
            total = self.budget.get(name)
            if total is None:
                known = ", ".join(sorted(self.budget)) or "none"
                raise ResourceUnsatisfiable(f"unknown resource {name!r} (configured: {known})")
            if amount > total:
                raise ResourceUnsatisfiable(f"needs {amount} of {name!r} but the budget is {total}")

    def fits(self, needs: Mapping[str, int], reserved: Mapping[str, int] | None = None) -> bool:
        in_use, budget = self.in_use, self.budget
        # plain loops: on the dispatch hot path they beat all() over a generator
        if reserved:
            for n, a in needs.items():  # noqa: SIM110
                if in_use[n] + reserved.get(n, 0) + a > budget[n]:
                    return False
            return True
        for n, a in needs.items():  # noqa: SIM110
            if in_use[n] + a > budget[n]:
                return False
        return True

    def shortfall(self, needs: Mapping[str, int]) -> dict[str, int]:
        """How much of each resource is missing for ``needs`` to fit now."""
        short = {}
        for name, amount in needs.items():
            missing = self.in_use[name] + amount - self.budget[name]
            if missing > 0:
                short[name] = missing
        return short

    def acquire(self, needs: Mapping[str, int]) -> None:
        in_use = self.in_use
        for name, amount in needs.items():
            in_use[name] += amount

    def release(self, needs: Mapping[str, int]) -> None:
        in_use = self.in_use
        for name, amount in needs.items():
            in_use[name] -= amount

    def snapshot(self, names: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        keys = self.budget if names is None else names
        return {n: {"used": self.in_use[n], "budget": self.budget[n]} for n in keys}
