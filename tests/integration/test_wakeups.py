"""Wake-ups published by the task scripts themselves (multiswarm.wakeups, decision 50).

Submitting a ready task and finishing an attempt wake the partition's leader; a dispatch call
wakes each swarm it assigned tasks to, and only those. The subscriber sets its events on each
message and again after a resubscription (a restarted server).
"""

from __future__ import annotations

import asyncio
import contextlib

from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.keys import Keys
from multiswarm.ops.tasks import Claimed
from multiswarm.redis_server import RedisServer
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from multiswarm.wakeups import wake_on

from .helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"


async def _heard(client: Client, channels: list[str], act: object) -> list[str]:
    """Channels among ``channels`` that got a message while ``act`` (a coroutine) ran."""
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(*channels)
        for _ in channels:  # the subscribe confirmations
            await pubsub.get_message(timeout=5)
        await act  # type: ignore[misc]
        got: list[str] = []
        while (msg := await pubsub.get_message(timeout=0.5)) is not None:
            if msg["type"] == "message":
                got.append(msg["channel"].decode())
    finally:  # closed on a failure too: left to the collector, it warns inside a later test
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    return got


async def test_submit_dispatch_and_finish_wake_the_right_loops(
    scripts: Scripts, keys: Keys, client: Client
) -> None:
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", ["x"]), ("b", ["y"]))
    coord = await leader(scripts, keys)
    lead, a, b = keys.wake_leader, keys.wake_swarm("a"), keys.wake_swarm("b")
    watched = [lead, a, b]
    # a task waiting on a dependency is not ready: nothing for the leader yet
    first = task_spec(NOOP, id="t1", capabilities=["x"])
    later = task_spec(NOOP, id="t2", capabilities=["x"], depends_on=["t1"])
    assert await _heard(client, watched, store.submit([(first, None)])) == [lead]
    assert await _heard(client, watched, store.submit([(later, None)])) == []
    # dispatch wakes only the swarm it gave work to
    assert await _heard(client, watched, coord.dispatch_once()) == [a]
    (claimed,) = await store.claim("a", "w1", 5)
    # the completion frees a slot and makes t2 ready: the leader looks again
    assert await _heard(client, watched, store.complete("t1", claimed.token, "w1", None)) == [lead]
    assert await _heard(client, watched, coord.dispatch_once()) == [a]


async def test_subscriber_sets_events_on_messages_and_after_a_restart(
    own_redis: RedisServer, namespace: str
) -> None:
    settings = Settings(redis_url=own_redis.url, redis_url_explicit=True, namespace=namespace)
    keys = Keys(namespace)
    client = connect(settings)
    woken = asyncio.Event()
    waiter = asyncio.create_task(wake_on(client, keys, {keys.wake_leader: woken}))
    try:
        await asyncio.wait_for(woken.wait(), 10)  # the subscription itself: look once
        woken.clear()
        publisher = connect(settings)
        await publisher.publish(keys.wake_leader, "")
        await asyncio.wait_for(woken.wait(), 10)
        woken.clear()
        # a restart drops the subscription; what was published meanwhile is lost, so the
        # resubscription wakes the loop once in case
        own_redis.restart()
        await asyncio.wait_for(woken.wait(), 30)
        await publisher.aclose()
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        await client.aclose()


async def _full_swarm(
    scripts: Scripts, keys: Keys, capacity: int, submitted: int
) -> tuple[TaskStore, list[Claimed]]:
    """Swarm ``a`` (no capabilities) at ``capacity`` on w1, ``submitted`` tasks given to it by
    the leader as far as it has room, and claimed: the store and the claimed tasks."""
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", []), capacity=capacity)
    coord = await leader(scripts, keys)
    await store.submit([(task_spec(NOOP, id=f"t{i}"), None) for i in range(submitted)])
    assert await coord.dispatch_once() == min(capacity, submitted)
    return store, await store.claim("a", "w1", capacity)


async def test_a_nearly_full_swarm_wakes_the_leader_once_a_quarter_is_free(
    scripts: Scripts, keys: Keys, client: Client
) -> None:
    store, claimed = await _full_swarm(scripts, keys, 8, 10)  # full: 2 wait in ready
    lead = keys.wake_leader
    # 7 of 8 busy: the worker's prefetch keeps its agents fed, the leader waits for more room
    one = store.complete(claimed[0].id, claimed[0].token, "w1", None)
    assert await _heard(client, [lead], one) == []
    # 6 of 8: a quarter free, worth a dispatch round
    two = store.complete(claimed[1].id, claimed[1].token, "w1", None)
    assert await _heard(client, [lead], two) == [lead]
    # a failure always wakes it (its retry is due later)
    fail = store.fail(claimed[2].id, claimed[2].token, "boom")
    assert await _heard(client, [lead], fail) == [lead]


async def test_room_wakes_the_leader_only_while_tasks_wait_for_it(
    scripts: Scripts, keys: Keys, client: Client
) -> None:
    store, claimed = await _full_swarm(scripts, keys, 4, 4)
    lead = keys.wake_leader
    # half of the swarm free, but nothing ready or parked: a round would assign nothing
    for c in claimed[:2]:
        done = store.complete(c.id, c.token, "w1", None)
        assert await _heard(client, [lead], done) == []
    # one more task waits: the next freed room is worth a round
    await store.submit([(task_spec(NOOP, id="late"), None)])
    assert await client.zcard(keys.ready) == 1
    last = store.complete(claimed[2].id, claimed[2].token, "w1", None)
    assert await _heard(client, [lead], last) == [lead]


async def test_room_wakes_the_leader_for_a_parked_task(
    scripts: Scripts, keys: Keys, client: Client
) -> None:
    store = TaskStore(scripts, keys)
    # b has room but not the capability: the third task parks instead of blocking the queue
    await host(scripts, keys, "w1", ("a", ["x"]), ("b", ["y"]), capacity=2)
    coord = await leader(scripts, keys)
    await store.submit([(task_spec(NOOP, id=f"t{i}", capabilities=["x"]), None) for i in range(3)])
    assert await coord.dispatch_once() == 2
    await coord.dispatch_once()  # the capability set named in the reply: its task parks
    assert await client.zcard(keys.ready) == 0 and await client.exists(keys.parked_index) == 1
    claimed = await store.claim("a", "w1", 2)
    done = store.complete(claimed[0].id, claimed[0].token, "w1", None)
    assert await _heard(client, [keys.wake_leader], done) == [keys.wake_leader]
