"""A script whose reply is lost after it ran (or that waits behind a stall past the socket
timeout) is sent again by the client's retry: it must act once and answer as the first run did.

Each case arms the proxy to lose the reply of one FCALL of the script under test, calls the
operation through the proxy (so the client retries on a new connection with the same request id)
and then checks, directly on the server, that the effect happened exactly once. Without request
ids every case fails: a second claim finds the queue empty, a second allocation books the pool
twice, a second vote is an equivocation, a second breaker permit is orphaned, a second completion
counts as a duplicate, a second submit is refused ALREADY_EXISTS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from multiswarm.breakers import BreakerConfig, BreakerRegistry
from multiswarm.config import Settings
from multiswarm.connection import connect, ping
from multiswarm.consensus import Consensus
from multiswarm.keys import Keys
from multiswarm.ops import swarms as ops_swarms
from multiswarm.ops.tasks import Outcome
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.resources import ResourcePools
from multiswarm.script_library import function_name
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.faults.proxy import ReplyDroppingProxy
from tests.integration.helpers import eventually, host, leader

KEYS = Keys("f")


def fast_settings(url: str) -> Settings:
    return Settings(
        redis_url=url,
        redis_url_explicit=True,
        namespace=KEYS.ns,
        socket_timeout_ms=1000,
        connect_timeout_ms=1000,
        reconnect_timeout_s=20.0,
    )


@pytest.fixture
async def direct(stallable_redis: RedisServer) -> AsyncIterator[Scripts]:
    client = connect(fast_settings(stallable_redis.url))
    yield Scripts(client, reconnect_timeout_s=20.0)
    await client.aclose()


@pytest.fixture
async def lossy(proxy: ReplyDroppingProxy) -> AsyncIterator[Scripts]:
    """Scripts whose connections go through the reply-dropping proxy."""
    client = connect(fast_settings(proxy.url))
    yield Scripts(client, reconnect_timeout_s=20.0)
    await client.aclose()


def lose_next_reply(proxy: ReplyDroppingProxy, scripts: Scripts, name: str) -> None:
    proxy.drop_reply_to(function_name(name).encode())


@pytest.fixture(autouse=True)
async def preloaded(direct: Scripts) -> None:
    """Load the library first: the reply to lose is the function's own, not a load's."""
    await direct.load()


async def stats(direct: Scripts) -> dict[str, int]:
    return await TaskStore(direct, KEYS).stats()


async def one_assigned_task(direct: Scripts) -> str:
    await host(direct, KEYS, "w1", ("s1", []))
    coord = await leader(direct, KEYS)
    (tid,) = await TaskStore(direct, KEYS).submit([(task_spec("m.x:f"), 1)])
    assert await coord.dispatch_once() == 1
    return tid


async def test_claim(direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy) -> None:
    tid = await one_assigned_task(direct)
    lose_next_reply(proxy, lossy, "claim_tasks")
    claimed = await TaskStore(lossy, KEYS).claim("s1", "w1", 10)
    assert proxy.dropped == 1
    assert [c.id for c in claimed] == [tid]
    task = await TaskStore(direct, KEYS).get(tid)
    assert task.status == "running" and task.token == claimed[0].token
    assert task.attempts == 1
    assert (await stats(direct))["executions"] == 1


async def test_complete(direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy) -> None:
    await one_assigned_task(direct)
    (c,) = await TaskStore(direct, KEYS).claim("s1", "w1", 1)
    lose_next_reply(proxy, lossy, "finish_tasks")
    assert await TaskStore(lossy, KEYS).complete(c.id, c.token, "w1", {"ok": 1}) == "completed"
    assert proxy.dropped == 1
    counters = await stats(direct)
    assert counters["completed"] == 1
    assert counters.get("duplicate_results", 0) == 0


async def test_fail(direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy) -> None:
    tid = await one_assigned_task(direct)
    (c,) = await TaskStore(direct, KEYS).claim("s1", "w1", 1)
    lose_next_reply(proxy, lossy, "finish_tasks")
    assert await TaskStore(lossy, KEYS).fail(c.id, c.token, "boom") == "retry"
    assert proxy.dropped == 1
    assert (await TaskStore(direct, KEYS).get(tid)).attempts == 1


async def test_submit(direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy) -> None:
    spec = task_spec("m.x:f", id="t-once")
    lose_next_reply(proxy, lossy, "submit_tasks")
    assert await TaskStore(lossy, KEYS).submit([(spec, 1)]) == {"t-once": "ready"}
    assert proxy.dropped == 1
    assert (await stats(direct))["submitted"] == 1


async def test_delete_swarm(direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy) -> None:
    """The retry after a lost reply answers as the first run (the status the swarm had), not
    NOT_FOUND for the swarm the first run deleted."""
    await host(direct, KEYS, "w1", ("s1", []))
    await SwarmRegistry(direct, KEYS).transition("s1", "completed")
    lose_next_reply(proxy, lossy, "delete_swarm")
    assert await ops_swarms.delete_swarm(lossy, KEYS, "s1") == "completed"
    assert proxy.dropped == 1
    assert await SwarmRegistry(direct, KEYS).swarm_ids() == []


async def test_allocate_resource(
    direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy
) -> None:
    await SwarmRegistry(direct, KEYS).register_swarm(swarm_spec("s1"))
    await ResourcePools(direct, KEYS).init_pool("gpu", 10)
    lose_next_reply(proxy, lossy, "allocate_resource")
    alloc = await ResourcePools(lossy, KEYS).allocate("s1", "gpu", 4)
    assert proxy.dropped == 1
    assert alloc.held == 4
    usage = (await ResourcePools(direct, KEYS).usage())["gpu"]
    assert usage.allocated == 4 and usage.holders == {"s1": 4}


async def test_propose_and_cast_vote(
    direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy
) -> None:
    lose_next_reply(proxy, lossy, "propose_vote")
    pid = await Consensus(lossy, KEYS).propose("t", ["yes", "no"], ["a", "b", "c"], 60_000)
    lose_next_reply(proxy, lossy, "cast_vote")
    receipt = await Consensus(lossy, KEYS).vote(pid, "a", "yes")
    assert proxy.dropped == 2
    assert receipt.outcome == "recorded"
    tally = await Consensus(direct, KEYS).tally(pid)
    assert tally.status == "open"
    assert tally.counts.get("yes") == 1 and tally.votes == {"a": "yes"}
    assert [p.id for p in await Consensus(direct, KEYS).proposals()] == [pid]


async def test_breaker_permit_and_record(
    direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy
) -> None:
    config = BreakerConfig(failure_threshold=2, open_ms=60_000)
    breaker = await BreakerRegistry(lossy, KEYS).get_or_create("llm", config)
    permit = await breaker.acquire()
    lose_next_reply(proxy, lossy, "record_breaker")
    assert await breaker.failure(permit, "timeout") == "closed"  # one failure of two
    lose_next_reply(proxy, lossy, "acquire_breaker")
    await breaker.acquire()
    assert proxy.dropped == 2
    state = await (await BreakerRegistry(direct, KEYS).get_or_create("llm")).state()
    assert state.state == "closed" and state.failures == 1


async def asleep(url: str) -> bool:
    """True once the server no longer answers PING within 100 ms (DEBUG SLEEP has begun)."""
    return not await ping(url, timeout_s=0.1)


async def test_stall_past_socket_timeout(stallable_redis: RedisServer, direct: Scripts) -> None:
    """The server sleeps longer than the socket timeout with a claim queued behind the sleep;
    the client gives up on the first send and retries: both run after the stall, one acts."""
    tid = await one_assigned_task(direct)
    sleeper = aioredis.from_url(stallable_redis.url)
    try:
        stalled = asyncio.ensure_future(
            sleeper.execute_command(  # type: ignore[no-untyped-call]
                "DEBUG", "SLEEP", "2.5"
            )
        )
        await eventually(lambda: asleep(stallable_redis.url), what="the server asleep")
        claimed = await TaskStore(direct, KEYS).claim("s1", "w1", 10)
        await stalled
    finally:
        await sleeper.aclose()
    assert [c.id for c in claimed] == [tid]
    assert (await stats(direct))["executions"] == 1


async def test_finish_batch(direct: Scripts, lossy: Scripts, proxy: ReplyDroppingProxy) -> None:
    """A worker's group commit: one lost reply, and each outcome of the batch still acts once."""
    await host(direct, KEYS, "w1", ("s1", []))
    coord = await leader(direct, KEYS)
    specs = [(task_spec("m.x:f"), 1) for _ in range(3)]
    await TaskStore(direct, KEYS).submit(specs)
    assert await coord.dispatch_once() == 3
    a, b, c = await TaskStore(direct, KEYS).claim("s1", "w1", 3)
    batch = [
        Outcome(a.id, a.token, "ok", b"\xa1x"),
        Outcome(b.id, b.token, "error", "boom"),
        Outcome(c.id, c.token, "permanent", "bad input"),
    ]
    lose_next_reply(proxy, lossy, "finish_tasks")
    assert await TaskStore(lossy, KEYS).finish("w1", batch) == ["completed", "retry", "dead"]
    assert proxy.dropped == 1
    counters = await stats(direct)
    assert (counters["completed"], counters["retries"], counters["dead"]) == (1, 1, 1)
    assert counters.get("duplicate_results", 0) == 0
    assert (await TaskStore(direct, KEYS).get(b.id)).attempts == 1
