"""With no registry process running, tasks queued to a swarm whose host died stayed ``assigned``.

Only the registry re-queued a dead worker's queue (reap_workers), and ``assigned`` had no
deadline, so without a registry those tasks waited forever. Now an assignment carries a deadline
in the leases zset: when it passes the leader re-queues the task (attempt not counted) unless its
swarm still has a live host, and the leader does not place tasks on a swarm without one.
"""

from __future__ import annotations

import asyncio

from multiswarm.coordinator import SwarmCoordinator
from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import eventually, host

NOOP = "multiswarm.demo_tasks:noop"


async def test_assignment_deadline_requeues_without_a_registry(
    scripts: Scripts, keys: Keys
) -> None:
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", ["c"]), capacity=3)
    await host(scripts, keys, "w2", ("b", ["c"]), capacity=3)
    coord = SwarmCoordinator(scripts, keys, lease_ms=30_000)
    coord.assign_timeout_ms = 300
    coord.heartbeat_timeout_ms = 2_000
    assert await coord.election.try_acquire()
    ids = [f"t{i}" for i in range(6)]
    await store.submit([(task_spec(NOOP, id=t, capabilities=["c"]), None) for t in ids])
    assert await coord.dispatch_once() == 6
    on_a = [t.id for t in await store.get_many(ids) if t and t.swarm == "a"]
    assert len(on_a) == 3

    # w1 dies; no registry runs to reap it. w2 works off its queue and keeps beating.
    await scripts.client.zadd(keys.heartbeats, {"w1": 0})
    for c in await store.claim("b", "w2", 3):
        assert await store.complete(c.id, c.token, "w2", None) == "completed"
    assert await registry.heartbeat("w2", {}, 0.0)

    async def requeued() -> bool:
        await coord.reap_once()
        tasks = await store.get_many(on_a)
        return all(t is not None and t.status == "ready" for t in tasks)

    await eventually(requeued, timeout_s=5, what="a's queue back to ready")
    assert {t.attempts for t in await store.get_many(on_a) if t} == {0}

    # they go to the swarm with a live host, and wait there past the deadline
    assert await coord.dispatch_once() == 3
    assert {t.swarm for t in await store.get_many(on_a) if t} == {"b"}
    await asyncio.sleep(0.5)
    assert await registry.heartbeat("w2", {}, 0.0)
    await coord.reap_once()
    assert {(t.status, t.swarm) for t in await store.get_many(on_a) if t} == {("assigned", "b")}
