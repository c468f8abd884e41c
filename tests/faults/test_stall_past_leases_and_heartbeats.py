"""Redis stalls longer than a task lease or a worker's heartbeat timeout, with the sweeps' calls
queued behind the stall: they run first when it ends, before the workers' renewals and beats.

Before decision 114 the first reap after such a stall counted a failed attempt for every running
task (a task on its last attempt was dead-lettered with its good result to come), and the first
reap of workers declared every worker dead and interrupted its swarms. Now time no client could
use is a blind window: what ran out inside it gets one full lease (or timeout) from its end, and
is reaped one lease (or timeout) later if nobody renews it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.faults.test_retried_scripts_act_once import KEYS, asleep
from tests.integration.helpers import eventually, host, leader

NOOP = "multiswarm.demo_tasks:noop"
SLEEPER = "multiswarm.demo_tasks:sleep_then_return"
T = TypeVar("T")


@pytest.fixture
async def direct(stallable_redis: RedisServer) -> AsyncIterator[Scripts]:
    settings = Settings(redis_url=stallable_redis.url, redis_url_explicit=True, namespace=KEYS.ns)
    scripts = Scripts(connect(settings), reconnect_timeout_s=30)
    yield scripts
    await scripts.client.aclose()


async def behind_a_stall(
    server: RedisServer, seconds: float, call: Callable[[], Awaitable[T]]
) -> T:
    """``call()`` sent while the server sleeps ``seconds``: it runs as the stall ends."""
    sleeper = aioredis.from_url(server.url)
    try:
        stalled = asyncio.ensure_future(
            sleeper.execute_command("DEBUG", "SLEEP", str(seconds))  # type: ignore[no-untyped-call]
        )
        await eventually(lambda: asleep(server.url), what="the server asleep")
        out = await call()
        await stalled
        return out
    finally:
        await sleeper.aclose()


async def test_a_stall_past_the_lease_costs_no_attempt(
    stallable_redis: RedisServer, direct: Scripts
) -> None:
    await host(direct, KEYS, "w1", ("s1", []))
    coord = await leader(direct, KEYS)
    coord.blind_gap_ms = 1_000
    store = TaskStore(direct, KEYS)
    await store.submit([(task_spec(NOOP, id="t", lease_ms=3_000, max_attempts=1), None)])
    assert await coord.dispatch_once() == 1
    [claim] = await store.claim("s1", "w1", 1)
    assert await coord.reap_once() == (0, 0)  # the sweep's clock starts
    # the lease (3 s) runs out during a 4 s stall; the reap queued behind it runs first
    assert await behind_a_stall(stallable_redis, 4, coord.reap_once) == (0, 0)
    task = await store.get("t")
    assert (task.status, task.attempts) == ("running", 1)
    assert await store.extend("w1", {claim.id: claim.token}) == []  # the worker renews
    assert await store.complete(claim.id, claim.token, "w1", {"ok": 1}) == "completed"

    # a worker that died during the stall renews nothing: reaped one lease after it
    await store.submit([(task_spec(NOOP, id="u", lease_ms=3_000, max_attempts=1), None)])
    assert await coord.dispatch_once() == 1
    await store.claim("s1", "w1", 1)
    await coord.reap_once()
    await behind_a_stall(stallable_redis, 4, coord.reap_once)
    assert (await store.get("u")).status == "running"

    async def reaped() -> bool:
        await coord.reap_once()
        return (await store.get("u")).status == "dead"

    await eventually(reaped, timeout_s=10, what="u reaped a lease after the stall")
    assert "lease expired" in (await store.get("u")).error


async def test_sweeps_that_stay_slow_extend_a_lease_once(direct: Scripts) -> None:
    """Every reap call further apart than the blind gap opens a window (as when each call waits
    on a stopped replica): a lease its worker no longer renews is extended once, not at every
    window, and reaped (found in review: it stayed running as long as the sweeps were slow)."""
    await host(direct, KEYS, "w1", ("s1", []))
    coord = await leader(direct, KEYS)
    coord.blind_gap_ms = 500
    store = TaskStore(direct, KEYS)
    await store.submit([(task_spec(NOOP, id="v", lease_ms=1_000, max_attempts=1), None)])
    assert await coord.dispatch_once() == 1
    await store.claim("s1", "w1", 1)
    for _ in range(12):  # calls 0.7 s apart: each one a window; 8.4 s, 8 leases
        await coord.reap_once()
        if (await store.get("v")).status == "dead":
            break
        await asyncio.sleep(0.7)
    assert (await store.get("v")).status == "dead"


async def test_a_stall_past_the_heartbeat_timeout_reaps_no_live_worker(
    stallable_redis: RedisServer, direct: Scripts
) -> None:
    registry = SwarmRegistry(direct, KEYS)
    await host(direct, KEYS, "w1", ("s1", []))
    assert await registry.reap_workers(3_000) == []  # the sweep's clock starts
    # w1 beat just now; the 3.5 s stall outlasts its 3 s timeout, and the reap runs first
    assert await behind_a_stall(stallable_redis, 3.5, lambda: registry.reap_workers(3_000)) == []
    assert (await registry.get("s1")).status != "interrupted"
    assert await registry.heartbeat("w1", {}, 0.0)  # it beats again, nothing lost

    # one that stays silent is declared dead a timeout after the stall
    async def dead() -> bool:
        return await registry.reap_workers(3_000) == ["w1"]

    await eventually(dead, timeout_s=15, what="w1 reaped after its timeout")


@pytest.mark.slow
async def test_a_running_system_outlives_a_stall_past_its_leases(
    stallable_redis: RedisServer, tmp_path: Path
) -> None:
    """Registry, coordinator and worker processes; tasks of one attempt each running through a
    6 s stall of their 3 s leases and the 3 s heartbeat timeout: all complete, each once, the
    worker never declared dead."""
    settings = Settings(
        redis_url=stallable_redis.url,
        redis_url_explicit=True,
        namespace="stall",
        reconnect_timeout_s=30.0,
        heartbeat_timeout_ms=3000,
        lease_ms=3000,
    )
    group = ProcessGroup(settings, tmp_path)
    group.spawn("registry", ["registry"])
    group.spawn("coordinator", ["coordinator", "--id", "c1"])
    group.spawn("worker", ["worker", "--id", "w1", "--swarm", "s:work:2"])
    scripts = Scripts(connect(settings), reconnect_timeout_s=30.0)
    store, keys = TaskStore(scripts, Keys("stall")), Keys("stall")
    ids = ["a", "b"]
    try:
        spec = {"capabilities": ["work"], "lease_ms": 3000, "max_attempts": 1}
        await store.submit(
            [(task_spec(SLEEPER, id=t, **spec), {"seconds": 8}) for t in ids]  # type: ignore[arg-type]
        )

        async def running() -> bool:
            return all(t.status == "running" for t in await store.get_many(ids) if t)

        await eventually(running, timeout_s=60, what="both tasks running")
        sleeper = aioredis.from_url(stallable_redis.url, socket_timeout=30)
        try:
            await sleeper.execute_command("DEBUG", "SLEEP", "6")  # type: ignore[no-untyped-call]
        finally:
            await sleeper.aclose()

        async def done() -> bool:
            return all(t.status in ("completed", "dead") for t in await store.get_many(ids) if t)

        await eventually(done, timeout_s=60, what="both tasks ended")
        tasks = [t for t in await store.get_many(ids) if t]
        assert [(t.status, t.attempts) for t in tasks] == [("completed", 1)] * 2, tasks
        assert (await SwarmRegistry(scripts, keys).get("s")).status == "active"
        assert all(c.alive() for c in group.children)
    finally:
        await scripts.client.aclose()
        group.stop_all()
