"""``run worker --metrics-port``: the worker's own histograms after a known workload."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from multiswarm.api import Multiswarm
from multiswarm.config import Settings
from multiswarm.local_system import start_system
from multiswarm.redis_server import RedisServer

NOOP = "multiswarm.demo_tasks:noop"

pytestmark = pytest.mark.slow


def worker_metrics_url(log: Path, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"worker metrics: (\S+)", log.read_text() if log.exists() else "")
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no metrics URL in {log}")


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(url)).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


async def test_worker_serves_its_histograms(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        redis_url_explicit=True,
        namespace=f"w{uuid.uuid4().hex[:10]}",
        lease_ms=3000,
    )
    # start_system runs its own event loop: in a thread, beside this test's
    group = await asyncio.to_thread(
        start_system,
        settings,
        workers=1,
        swarms=0,
        agents=1,
        strategy="capability",
        log_dir=tmp_path,
        worker_args=["--metrics-port", "0"],
        user_swarms=["alpha:work:1"],
    )
    try:
        url = worker_metrics_url(tmp_path / "worker-0.log")
        async with await Multiswarm.connect(settings=settings) as ms:
            ids = [await ms.distribute_task(NOOP, i, capabilities=["work"]) for i in range(3)]
            for t in ids:
                await ms.wait_for(t, timeout_s=60)
            records = [await ms.get_task(t) for t in ids]
        got = await scrape(url)
        swarm = (("swarm", "alpha"),)
        ok = (("outcome", "ok"), ("swarm", "alpha"))
        assert got[("multiswarm_worker_task_run_seconds_count", ok)] == 3
        assert got[("multiswarm_worker_claim_batch_size_sum", swarm)] == 3
        waits = sum((r.started_ms - r.created_ms) / 1000 for r in records)
        # the queue waits are read in the background after each claim: allow them a moment
        deadline = time.monotonic() + 10
        while got.get(("multiswarm_worker_task_queue_wait_seconds_count", swarm)) != 3:
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.1)
            got = await scrape(url)
        assert got[("multiswarm_worker_task_queue_wait_seconds_sum", swarm)] == pytest.approx(waits)
    finally:
        codes = group.stop_all()
    assert codes["worker-0"] == 0, codes
