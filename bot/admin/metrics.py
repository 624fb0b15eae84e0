"""Prometheus exposition: a per-app registry whose collector reads the scheduler at scrape time.

Nothing is counted twice: the scheduler already keeps its counters, so the collector only
translates ``scheduler.stats()`` (plus the model, device and bot directories) into metric
families when /metrics is scraped. No process-global default registry is touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.scheduler.stats import COUNTED

if TYPE_CHECKING:
    from core.services import Services

PREFIX = "xiaoyou"
_QUANTILES = ("p50", "p95", "p99")


def _num(value: object) -> float:
    """A stats value as a float (they are all ints or floats; bools count as 0/1)."""
    if isinstance(value, bool | int | float):
        return float(value)
    raise TypeError(f"expected a number in scheduler stats, got {type(value).__name__}")


def _table(value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping in scheduler stats, got {type(value).__name__}")
    return value


class SchedulerCollector(Collector):
    """Translates one ``stats()`` snapshot per scrape into metric families."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        services = self._services
        stats = services.scheduler.stats()
        jobs = CounterMetricFamily(
            f"{PREFIX}_scheduler_jobs",
            "Jobs by lane, kind and event",
            labels=["lane", "kind", "event"],
        )
        wait = GaugeMetricFamily(
            f"{PREFIX}_scheduler_wait_seconds",
            "Queue wait quantiles over recent jobs",
            labels=["lane", "kind", "quantile"],
        )
        run = GaugeMetricFamily(
            f"{PREFIX}_scheduler_run_seconds",
            "Run time quantiles over recent jobs",
            labels=["lane", "kind", "quantile"],
        )
        for lane, kinds in _table(stats["kinds"]).items():
            for kind, row_obj in _table(kinds).items():
                row = _table(row_obj)
                for event in COUNTED:
                    jobs.add_metric([lane, kind, event], _num(row.get(event, 0)))
                for family, key in ((wait, "wait_ms"), (run, "run_ms")):
                    points = _table(row.get(key, {}))
                    for q in _QUANTILES:
                        if q in points:
                            family.add_metric([lane, kind, f"0.{q[1:]}"], _num(points[q]) / 1e3)
        yield jobs
        yield wait
        yield run

        queued = GaugeMetricFamily(
            f"{PREFIX}_scheduler_queued", "Queued jobs per lane", labels=["lane"]
        )
        running = GaugeMetricFamily(
            f"{PREFIX}_scheduler_running", "Running jobs per lane", labels=["lane"]
        )
        for lane, row_obj in _table(stats["lanes"]).items():
            row = _table(row_obj)
            queued.add_metric([lane], _num(row.get("queued", 0)))
            running.add_metric([lane], _num(row.get("running", 0)))
        yield queued
        yield running

        used = GaugeMetricFamily(
            f"{PREFIX}_resource_used", "Resource units held by running jobs", labels=["resource"]
        )
        budget = GaugeMetricFamily(
            f"{PREFIX}_resource_budget", "Configured resource budget", labels=["resource"]
        )
        slots = _table(stats["slots"])
        for name, row_obj in [*_table(stats["resources"]).items(), *slots.items()]:
            row = _table(row_obj)
            used.add_metric([name], _num(row["used"]))
            budget.add_metric([name], _num(row["budget"]))
        yield used
        yield budget

        lag = GaugeMetricFamily(
            f"{PREFIX}_event_loop_lag_seconds", "Event-loop lag (p50, p99, max)", labels=["stat"]
        )
        for key, value in _table(stats["loop_lag_ms"]).items():
            lag.add_metric([key], _num(value) / 1e3)
        yield lag
        yield GaugeMetricFamily(
            f"{PREFIX}_scheduler_accepting",
            "1 while the scheduler admits jobs",
            value=1.0 if stats["state"] == "running" else 0.0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_uptime_seconds",
            "Seconds since the scheduler started",
            value=_num(stats["uptime_s"]),
        )
        yield from self._directories()

    def _directories(self) -> Iterator[Metric]:
        services = self._services
        models = GaugeMetricFamily(
            f"{PREFIX}_model_loaded", "1 if the model is loaded", labels=["model"]
        )
        for entry in services.models.snapshot():
            models.add_metric([str(entry.get("name", "?"))], 1.0 if entry.get("loaded") else 0.0)
        yield models
        vram = GaugeMetricFamily(
            f"{PREFIX}_vram_mb",
            "The model manager's VRAM residency plan per GPU: budget, used (weights + working)",
            labels=["device", "what"],
        )
        for device, row in services.models.vram().items():
            for what in ("budget_mb", "used_mb", "working_mb", "peak_mb"):
                vram.add_metric([device, what.removesuffix("_mb")], _num(row.get(what)))
        yield vram
        yield GaugeMetricFamily(
            f"{PREFIX}_devices_connected",
            "Connected devices",
            value=len(services.devices.snapshot()),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_bots_connected",
            "Connected OneBot accounts",
            value=len(services.bots.snapshot()),
        )


def build_registry(services: Services) -> CollectorRegistry:
    """A registry owned by one app (auto_describe off: collect() runs only at scrape time)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SchedulerCollector(services))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, resident memory, open fds
    return registry
