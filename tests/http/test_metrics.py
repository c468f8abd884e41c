"""``GET /metrics`` after a known workload, parsed with ``prometheus_client.parser``: every
metric present, each with the value the workload implies (this module's system is its own
namespace, so the counters start at zero)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from multiswarm.api import Multiswarm
from multiswarm.breakers import BreakerConfig, BreakerRegistry
from multiswarm.worker_metrics import WorkerMetrics

from .conftest import FAIL, NOOP, System

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def workload(http: httpx.AsyncClient) -> None:
    """3 completed, 1 dead after 2 attempts (1 retry), 1 waiting for a capability nobody has."""
    ids = []
    for i in range(3):
        body = {"handler": NOOP, "payload": i, "capabilities": ["work"]}
        ids.append((await http.post("/api/v1/tasks", json=body)).json()["id"])
    body = {"handler": FAIL, "capabilities": ["work"], "max_attempts": 2}
    ids.append((await http.post("/api/v1/tasks", json=body)).json()["id"])
    await http.post("/api/v1/tasks", json={"handler": NOOP, "capabilities": ["nowhere"]})
    deadline = time.monotonic() + 60
    while True:
        statuses = [(await http.get(f"/api/v1/tasks/{t}")).json()["status"] for t in ids]
        if statuses == ["completed"] * 3 + ["dead"]:
            return
        assert time.monotonic() < deadline, statuses
        await asyncio.sleep(0.2)


async def test_metrics_after_a_known_workload(system: System) -> None:
    async with await Multiswarm.connect(settings=system.settings) as ms:
        breakers = BreakerRegistry(ms.scripts, ms.keys)
        await breakers.get_or_create("closed-one")
        tripped = await breakers.get_or_create("tripped", BreakerConfig(failure_threshold=1))
        await tripped.failure(await tripped.acquire(), "down")
        # a malformed message on the tasks channel: each receiver refuses and dead-letters it
        await ms.client.publish(ms.keys.ch_tasks, b"not an envelope")

        async def refused() -> int:
            return (await ms.dead_letters(1)).counts.get("dlq", 0)

        deadline = time.monotonic() + 30
        while not await refused():
            assert time.monotonic() < deadline, "the malformed message was not dead-lettered"
            await asyncio.sleep(0.1)
        refused_before = await refused()
    async with system.client() as http:
        await workload(http)
        resp = await http.get("/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=")
        got = parse(resp.text)
        leader: Any = (await http.get("/api/v1/leader")).json()
        status: Any = (await http.get("/api/v1/status")).json()
    async with await Multiswarm.connect(settings=system.settings) as ms:
        refused_after = (await ms.dead_letters(1)).counts["dlq"]

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    tasks = {s: value("multiswarm_tasks", status=s) for s in status["tasks"]}
    assert tasks == {
        **dict.fromkeys(status["tasks"], 0.0),
        "completed": 3.0,
        "dead": 1.0,
        "ready": 1.0,
    }
    assert value("multiswarm_tasks_submitted_total") == 5
    assert value("multiswarm_tasks_completed_total") == 3
    assert value("multiswarm_tasks_failed_total") == 2  # both attempts of the failing task
    assert value("multiswarm_tasks_dead_total") == 1
    assert value("multiswarm_task_retries_total") == 1
    assert value("multiswarm_leader_epoch") == leader["epoch"] >= 1
    assert 0 < value("multiswarm_leader_lease_seconds_left") <= 3.0
    for swarm in ("alpha", "beta"):
        assert value("multiswarm_swarm_active_tasks", swarm=swarm) == 0
        capacity = next(s["capacity"] for s in status["swarms"] if s["id"] == swarm)
        assert value("multiswarm_swarm_capacity", swarm=swarm) == capacity > 0
    assert value("multiswarm_swarms", status="active") == 2
    assert value("multiswarm_workers") == 1
    (worker,) = [w["id"] for w in status["workers"]]
    assert 0 <= value("multiswarm_worker_heartbeat_age_seconds", worker=worker) < 6
    assert value("multiswarm_breaker_state", breaker="closed-one") == 0
    assert value("multiswarm_breaker_state", breaker="tripped") == 2
    # every receiver dead-letters its copy: the count may grow while the scrape runs
    assert 1 <= refused_before <= value("multiswarm_dead_letters") <= refused_after


async def test_worker_histograms_served_and_parsed(system: System) -> None:
    # the worker hook is not in worker.py yet (see multiswarm/worker_metrics.py): feed the
    # module what the hook would, from real task records this system ran
    metrics = WorkerMetrics()
    url = metrics.serve(0)
    try:
        await _feed_and_scrape(system, metrics, url)
    finally:
        metrics.close()


async def _feed_and_scrape(system: System, metrics: WorkerMetrics, url: str) -> None:
    async with system.client() as http:
        ids = []
        for i in range(2):
            body = {"handler": NOOP, "payload": i, "capabilities": ["work"]}
            ids.append((await http.post("/api/v1/tasks", json=body)).json()["id"])
        deadline = time.monotonic() + 30
        while [(await http.get(f"/api/v1/tasks/{t}")).json()["status"] for t in ids] != [
            "completed"
        ] * len(ids):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    async with await Multiswarm.connect(settings=system.settings) as ms:
        records = [await ms.get_task(t) for t in ids]
        metrics.claimed(ms.tasks, "alpha", ids)
        metrics.claimed(ms.tasks, "alpha", [])  # an empty claim is not a batch
        metrics.ran("alpha", "ok", 0.02)
        assert await metrics.timed("alpha", _run("error", 0.3)) == ("error", None)
        await asyncio.gather(*metrics._pending)
        off = WorkerMetrics(enabled=False)  # what a worker without --metrics-port holds
        off.claimed(ms.tasks, "alpha", ids)
        assert await off.timed("alpha", _run("ok", 0.0)) == ("ok", None)
        assert not off._pending and [m.samples for m in off.run_s.collect()] == [[]]
    async with httpx.AsyncClient() as plain:
        got = parse((await plain.get(url)).text)
    waits = [(r.started_ms - r.created_ms) / 1000 for r in records]
    prefix = "multiswarm_worker_"
    assert got[(f"{prefix}claim_batch_size_count", (("swarm", "alpha"),))] == 1
    assert got[(f"{prefix}claim_batch_size_sum", (("swarm", "alpha"),))] == 2
    assert got[(f"{prefix}task_queue_wait_seconds_count", (("swarm", "alpha"),))] == 2
    assert got[(f"{prefix}task_queue_wait_seconds_sum", (("swarm", "alpha"),))] == pytest.approx(
        sum(waits)
    )
    ok = (("outcome", "ok"), ("swarm", "alpha"))
    assert got[(f"{prefix}task_run_seconds_count", ok)] == 1
    assert got[(f"{prefix}task_run_seconds_bucket", (("le", "0.025"), *ok))] == 1
    assert got[(f"{prefix}task_run_seconds_bucket", (("le", "0.01"), *ok))] == 0
    error = (("outcome", "error"), ("swarm", "alpha"))
    assert got[(f"{prefix}task_run_seconds_count", error)] == 1
    assert got[(f"{prefix}task_run_seconds_sum", error)] >= 0.3  # the awaited run's wall time


async def _run(outcome: str, seconds: float) -> tuple[str, None]:
    """Stands in for ``AgentProcess.run``: ``(outcome, data)`` after ``seconds``."""
    await asyncio.sleep(seconds)
    return outcome, None
