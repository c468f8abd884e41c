"""A server stalled by another client's long script answers every command ``BUSY`` until the
script ends: the command did not run, so it is waited out like an outage (connection.py
``server_busy``), never taken for an answer that ends a call, a loop or a worker."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from multiswarm.api import Multiswarm
from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.envelopes import Delivered
from multiswarm.errors import NotFound, RedisUnavailable
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger
from multiswarm.ops.recovery import Begin, begin_recoveries
from multiswarm.redis_server import RedisServer
from multiswarm.registry import swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.faults.inprocess import worker_system

from .helpers import eventually, host, leader

NOOP = "multiswarm.demo_tasks:noop"
#: Spins until ARGV[1] seconds of server time have passed (TIME is read afresh in a script).
SPIN = """
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) * 1e6 + tonumber(t0[2])
while true do
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1e6 + tonumber(t[2]) - start > tonumber(ARGV[1]) * 1e6 then break end
end
return 1
"""


@pytest.fixture
def busy_server() -> Iterator[RedisServer]:
    """A private server that answers BUSY once a script has run for 50 ms."""
    with RedisServer() as server:
        with redis.Redis.from_url(server.url) as r:
            r.config_set("busy-reply-threshold", 50)
        yield server


@pytest.fixture
async def store(busy_server: RedisServer, namespace: str) -> AsyncIterator[TaskStore]:
    settings = Settings(redis_url=busy_server.url, redis_url_explicit=True, namespace=namespace)
    scripts = Scripts(connect(settings), reconnect_timeout_s=10.0)
    await scripts.load()
    yield TaskStore(scripts, Keys(namespace))
    await scripts.client.aclose()


def _stall(server: RedisServer, seconds: float) -> threading.Thread:
    """Run SPIN for ``seconds`` from another client; returns once the server answers BUSY."""
    spinning = threading.Thread(
        target=lambda: redis.Redis.from_url(server.url).eval(SPIN, 0, seconds), daemon=True
    )
    spinning.start()
    probe = redis.Redis.from_url(server.url)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            probe.ping()
        except redis.exceptions.ResponseError as e:
            assert str(e).startswith("BUSY ")
            return spinning
        time.sleep(0.01)
    raise AssertionError("the server never answered BUSY")


async def test_reads_and_script_calls_wait_out_a_busy_server(
    busy_server: RedisServer, store: TaskStore
) -> None:
    client: Client = store.scripts.client
    spinning = await asyncio.to_thread(_stall, busy_server, 1.0)
    # each answered BUSY at first (the script still spins); retried, they run once it ends
    assert await store.scripts.read(lambda: client.exists("nothing")) == 0
    await store.submit([(task_spec(NOOP, id="t1"), None)])
    assert not spinning.is_alive()
    assert (await store.get("t1")).status == "ready"


async def test_a_woken_call_that_meets_a_busy_server_runs_once_it_ends(
    busy_server: RedisServer, store: TaskStore
) -> None:
    scripts, keys = store.scripts, store.keys
    await host(scripts, keys, "w1", ("a", []))
    coord = await leader(scripts, keys)
    await store.submit([(task_spec(NOOP, id="t1"), None)])
    assert await coord.dispatch_once() == 1
    spinning = await asyncio.to_thread(_stall, busy_server, 1.0)
    # the XREAD and the FCALL behind it both answered BUSY: the claim did not run, and is run
    _, claimed = await store.claim_when_woken("a", "w1", 4, "0-0", 100)
    assert not spinning.is_alive()
    assert [c.id for c in claimed] == ["t1"]
    assert (await store.get("t1")).status == "running"


async def test_a_busy_server_past_the_reconnect_window_is_unavailable(
    busy_server: RedisServer, store: TaskStore
) -> None:
    client: Client = store.scripts.client
    store.scripts.reconnect_timeout_s = 0.3
    spinning = await asyncio.to_thread(_stall, busy_server, 1.5)
    with pytest.raises(RedisUnavailable, match="BUSY"):
        await store.scripts.read(lambda: client.exists("nothing"))
    assert spinning.is_alive()  # given up within the window, while the stall went on
    await asyncio.to_thread(spinning.join)


async def test_a_worker_keeps_serving_through_a_busy_server(
    busy_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    settings = Settings(
        redis_url=busy_server.url,
        redis_url_explicit=True,
        namespace=namespace,
        reconnect_timeout_s=10.0,
    )
    async with worker_system(
        settings, [swarm_spec("a", agents=1)], tmp_path, concurrency=1
    ) as system:
        await system.store.submit([(task_spec(NOOP, id="before"), None)])
        await eventually(lambda: _completed(system.store, "before"), what="before completed")
        # every loop of the worker meets BUSY replies meanwhile (claims, renewals, beats,
        # the claim loop's safety net): none of them may end the worker
        spinning = await asyncio.to_thread(_stall, busy_server, 3.0)
        await asyncio.to_thread(spinning.join)
        await system.store.submit([(task_spec(NOOP, id="after"), None)])
        await eventually(lambda: _completed(system.store, "after"), what="after completed")
        assert not system.run.done() and system.worker._failure is None


async def _completed(store: TaskStore, task_id: str) -> bool:
    return (await store.get(task_id)).status == "completed"


async def test_a_subscription_outlasts_a_busy_server_and_replays_what_it_missed(
    busy_server: RedisServer, namespace: str
) -> None:
    """The subscription's health check (a PING on the idle connection) met BUSY: redis-py
    raised it as a plain ResponseError, which ended the listen loop (and so a worker), and a
    replay that met it read no history: the gap was lost (found in review)."""
    settings = Settings(redis_url=busy_server.url, redis_url_explicit=True, namespace=namespace)
    client = connect(settings, health_check_interval=1)
    keys = Keys(namespace)
    listener, sender = SwarmMessenger(client, keys, "alpha"), SwarmMessenger(client, keys, "b")
    ready, got = asyncio.Event(), asyncio.Queue[Delivered]()

    async def pump() -> None:
        async for _channel, env in listener.listen([keys.ch_tasks], ready):
            got.put_nowait(env)

    task = asyncio.create_task(pump())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(1.5)  # idle past the health check's interval: its PING is due
        spinning = await asyncio.to_thread(_stall, busy_server, 3.0)
        await asyncio.to_thread(spinning.join)
        await sender.publish(keys.ch_tasks, "note", {"n": 1}, record=True)
        env = await asyncio.wait_for(got.get(), 10)
        assert env.payload == {"n": 1} and not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


async def test_a_waiter_gives_up_at_its_timeout_through_a_stall(
    busy_server: RedisServer, namespace: str
) -> None:
    """Each step of a waiter was retried for the whole reconnect window: through a stall (or
    an outage) `result(timeout_s=1)` returned only when the stall ended (found in review)."""
    settings = Settings(
        redis_url=busy_server.url,
        redis_url_explicit=True,
        namespace=namespace,
        reconnect_timeout_s=30.0,
    )
    client = connect(settings)
    try:
        ms = Multiswarm(client, settings)
        tid = await ms.distribute_task(NOOP, None)  # no worker: it never runs
        spinning = await asyncio.to_thread(_stall, busy_server, 5.0)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="no reply from Redis within 1"):
            await ms.result(tid, timeout_s=1)
        assert time.monotonic() - started < 1 + 1.0  # the deadline and the step's grace
        assert spinning.is_alive()
        await asyncio.to_thread(spinning.join)
    finally:
        await client.aclose()


async def test_pipelined_script_calls_wait_out_a_busy_server(
    busy_server: RedisServer, store: TaskStore
) -> None:
    """Script calls pipelined in one round trip (`Scripts.call_many`: the recovery's steps) got
    BUSY in place, which read as the script's refusal (found in review): now each that did not
    run is run alone once the stall ends, and gives the script's own answer."""
    step = Begin(plan_id="p1", swarm="ghost", interrupted_ms=1, summary=b"{}", requeue=[])
    spinning = await asyncio.to_thread(_stall, busy_server, 1.0)
    (begun,) = await begin_recoveries(store.scripts, store.keys, [step])
    assert not spinning.is_alive()
    assert isinstance(begun, NotFound), begun  # the answer, not a BUSY taken for a refusal
