"""A coordinator's background loops (election, reaping) end the process when they fail, and a
reply error in the reaping loop's deadline timer is no failure.

Before, `run` awaited only the leading loop: the election and reaping loops could die without a
trace while the process went on dispatching and renewing its lease. One way in: on a cluster
whose master failed, the deadline timer's `ZRANGE` raised redis-py's `ClusterDownError` (a reply
error, not translated), which ended the reaping loop for good: expired leases were never reaped
again and their tasks stayed running (found in review).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import redis.exceptions

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.coordinator_process import CoordinatorProcess
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import eventually, host

NOOP = "multiswarm.demo_tasks:noop"


@contextlib.asynccontextmanager
async def _leading(settings: Settings, coord: SwarmCoordinator) -> Any:
    stop = asyncio.Event()
    run = asyncio.create_task(CoordinatorProcess(coord).run(stop))
    try:
        await eventually(lambda: _leads(coord), what="the coordinator leading")
        yield run
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 30)
        await coord.scripts.client.aclose()


async def _leads(coord: SwarmCoordinator) -> bool:
    return coord.election.is_leader


async def test_a_reply_error_in_the_deadline_timer_leaves_reaping_running(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    coord = SwarmCoordinator(Scripts(connect(settings)), keys, reap_interval_s=0.2)
    client: Any = coord.scripts.client
    real_zrange = client.zrange
    failures: list[int] = []

    async def cluster_down(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")
        return await real_zrange(*args, **kwargs)

    client.zrange = cluster_down
    store = TaskStore(scripts, keys)
    async with _leading(settings, coord) as run:
        await host(scripts, keys, "w1", ("s1", []))
        await store.submit([(task_spec(NOOP, id="t", lease_ms=1000), None)])

        async def assigned() -> bool:
            return (await store.get("t")).status == "assigned"

        await eventually(assigned, what="t assigned")
        assert [c.id for c in await store.claim("s1", "w1", 1)] == ["t"]  # never renewed

        async def reaped() -> bool:
            return (await store.get("t")).status != "running"

        await eventually(reaped, timeout_s=10, what="t's expired lease reaped")
        assert failures and not run.done()
        assert "lease expired" in (await store.get("t")).error


async def test_a_background_loop_that_fails_ends_the_coordinator(
    settings: Settings, keys: Keys
) -> None:
    coord = SwarmCoordinator(Scripts(connect(settings)), keys, reap_interval_s=0.2)

    async def broken() -> Any:
        raise RuntimeError("injected fault in reaping")

    coord.reap_once = broken  # type: ignore[method-assign]
    async with _leading(settings, coord) as run:
        with pytest.raises(RuntimeError, match="injected fault in reaping"):
            await asyncio.wait_for(run, 10)
