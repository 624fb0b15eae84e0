"""/metrics: Prometheus text that the official parser reads, values read from the scheduler."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core.scheduler import JobSpec, Lane, Scheduler
from tests.admin.conftest import Blocker, run_some


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


async def test_metrics_parse_and_match_stats(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    await run_some(scheduler)
    for _ in range(200):  # the lag monitor samples every 20 ms: wait for its first sample
        if scheduler.loop_lag.samples:
            break
        await asyncio.sleep(0.01)
    m = await scrape(client)
    jobs = "xiaoyou_scheduler_jobs_total"
    assert m[key(jobs, lane="interactive", kind="demo", event="completed")] == 3
    assert m[key(jobs, lane="interactive", kind="demo", event="submitted")] == 3
    assert m[key(jobs, lane="background", kind="broken", event="failed")] == 1
    stats = scheduler.stats()
    p95_ms = stats["kinds"]["interactive"]["demo"]["run_ms"]["p95"]
    got = m[key("xiaoyou_scheduler_run_seconds", lane="interactive", kind="demo", quantile="0.95")]
    assert abs(got - p95_ms / 1e3) < 1e-9
    assert m[key("xiaoyou_resource_budget", resource="vram:0")] == 8192
    assert m[key("xiaoyou_resource_budget", resource="runner")] == 8
    assert m[key("xiaoyou_scheduler_accepting")] == 1
    assert m[key("xiaoyou_model_loaded", model="llm")] == 0
    assert m[key("xiaoyou_vram_mb", device="cuda:0", what="used")] == 2048  # the residency plan
    assert m[key("xiaoyou_devices_connected")] == 1
    assert m[key("xiaoyou_bots_connected")] == 1
    assert key("xiaoyou_event_loop_lag_seconds", stat="p99") in m
    assert m[key("xiaoyou_uptime_seconds")] >= 0
    assert m[key("process_resident_memory_bytes")] > 0  # this app's registry, not the global one


async def test_metrics_are_read_at_scrape_time(
    client: httpx.AsyncClient, scheduler: Scheduler
) -> None:
    before = await scrape(client)
    assert before[key("xiaoyou_resource_used", resource="vram:0")] == 0
    blocker = Blocker()
    spec = JobSpec(kind="sd", lane=Lane.BACKGROUND, resources={"vram:0": 3000})
    handle = scheduler.submit(blocker, spec=spec)
    await blocker.started.wait()
    during = await scrape(client)
    assert during[key("xiaoyou_resource_used", resource="vram:0")] == 3000
    assert during[key("xiaoyou_scheduler_running", lane="background")] == 1
    blocker.release.set()
    await handle
    after = await scrape(client)
    assert after[key("xiaoyou_resource_used", resource="vram:0")] == 0
    assert (
        after[key("xiaoyou_scheduler_jobs_total", lane="background", kind="sd", event="completed")]
        == 1
    )


async def test_no_global_registry_is_used(client: httpx.AsyncClient) -> None:
    await scrape(client)
    names = {s.name for family in REGISTRY.collect() for s in family.samples}
    assert not any(n.startswith("xiaoyou_") for n in names)
