"""Registry state machine, limits and worker liveness on a real Redis."""

from __future__ import annotations

import pytest

from multiswarm.errors import CapacityExceeded, IllegalTransition, InvalidIdError, NotFound
from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader


async def _status_sets(registry: SwarmRegistry) -> dict[str, list[str]]:
    from multiswarm.keys import SWARM_STATUSES

    return {s: await registry.swarm_ids(s) for s in SWARM_STATUSES}


async def test_legal_path_and_illegal_transitions_refused(scripts: Scripts, keys: Keys) -> None:
    registry = SwarmRegistry(scripts, keys)
    assert await registry.register_swarm(swarm_spec("s1", ["parse"])) == "created"
    assert (await registry.get("s1")).status == "initializing"
    assert await registry.transition("s1", "active") == "initializing"
    before = await _status_sets(registry)

    with pytest.raises(IllegalTransition, match="active -> initializing"):
        await registry.transition("s1", "initializing")
    with pytest.raises(IllegalTransition, match="active -> recovering"):
        await registry.transition("s1", "recovering")
    with pytest.raises(IllegalTransition, match="unknown status"):
        await registry.transition("s1", "sleeping")
    # refused means nothing was written: record and every index unchanged
    assert (await registry.get("s1")).status == "active"
    assert await _status_sets(registry) == before

    assert await registry.transition("s1", "completed") == "active"
    with pytest.raises(IllegalTransition):
        await registry.transition("s1", "active")
    assert await registry.swarm_ids("completed") == ["s1"]
    with pytest.raises(NotFound):
        await registry.transition("nope", "active")


async def test_expected_status_guard(scripts: Scripts, keys: Keys) -> None:
    registry = SwarmRegistry(scripts, keys)
    await registry.register_swarm(swarm_spec("s1"))
    with pytest.raises(IllegalTransition, match="not active"):
        await registry.transition("s1", "failed", expected="active")
    assert (await registry.get("s1")).status == "initializing"


async def test_max_swarm_count(scripts: Scripts, keys: Keys) -> None:
    registry = SwarmRegistry(scripts, keys, max_swarms=2)
    await registry.register_swarm(swarm_spec("a"))
    await registry.register_swarm(swarm_spec("b"))
    with pytest.raises(CapacityExceeded):
        await registry.register_swarm(swarm_spec("c"))
    # a finished swarm no longer counts against the limit
    await registry.transition("a", "failed")
    assert await registry.register_swarm(swarm_spec("c")) == "created"
    assert await registry.register_swarm(swarm_spec("c")) == "exists"


@pytest.mark.parametrize("bad", ["", "a:b", "{x}", "a,b", "x" * 129, "spa ce", "ü", "ok\n"])
async def test_hostile_ids_refused(scripts: Scripts, keys: Keys, bad: str) -> None:
    with pytest.raises(InvalidIdError):
        swarm_spec(bad)
    with pytest.raises(InvalidIdError):
        await SwarmRegistry(scripts, keys).get(bad)


async def test_hosting_and_worker_loss(scripts: Scripts, keys: Keys) -> None:
    """A swarm whose only host leaves is interrupted, its queued tasks go back to ready, and a new
    host takes it through recovering to active."""
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("s1", ["parse"]))
    swarm = await registry.get("s1")
    assert (swarm.status, swarm.host_workers) == ("active", ["w1"])

    coord = await leader(scripts, keys)
    await store.submit(
        [
            (task_spec("multiswarm.demo_tasks:noop", id=f"t{i}", capabilities=["parse"]), i)
            for i in range(3)
        ]
    )
    assert await coord.dispatch_once() == 3
    claimed = await store.claim("s1", "w1", 1)
    assert [c.id for c in claimed] == ["t0"]

    assert await registry.reap_workers(30_000, worker_id="w1", graceful=False) == ["w1"]
    swarm = await registry.get("s1")
    assert (swarm.status, swarm.host_workers, swarm.active) == ("interrupted", [], 0)
    t0, t1, t2 = await store.get_many(["t0", "t1", "t2"])
    assert t0 is not None and (t0.status, t0.attempts) == ("failed", 1)  # died mid-run: retry
    assert t1 is not None and t2 is not None
    assert (t1.status, t2.status) == ("ready", "ready")  # queued, never started: ready again

    before = await registry.host_swarms("w2", {"host": "test"}, [swarm_spec("s1", ["parse"])])
    assert before == {"s1": "interrupted"}
    swarm = await registry.get("s1")
    assert (swarm.status, swarm.recoveries, swarm.host_workers) == ("active", 1, ["w2"])


async def test_expired_heartbeat_reaped(scripts: Scripts, keys: Keys) -> None:
    registry = SwarmRegistry(scripts, keys)
    await host(scripts, keys, "w1", ("s1", []))
    assert await registry.reap_workers(60_000) == []  # fresh beat: nobody reaped
    await scripts.client.zadd(keys.heartbeats, {"w1": 0})  # last beat long ago
    assert await registry.reap_workers(60_000) == ["w1"]
    assert not await registry.heartbeat("w1", {}, 0.0)  # it must register again
    assert (await registry.get("s1")).status == "interrupted"


async def test_archive_forgets_finished_swarms(scripts: Scripts, keys: Keys) -> None:
    registry = SwarmRegistry(scripts, keys)
    await registry.register_swarm(swarm_spec("old"))
    await registry.register_swarm(swarm_spec("live"))
    await registry.transition("old", "failed")
    assert await registry.archive(retention_ms=3_600_000) == []  # not yet 1 h old
    assert await registry.archive(retention_ms=0) == ["old"]
    assert await registry.swarm_ids() == ["live"]
    assert await registry.swarm_ids("failed") == []


async def test_a_dead_worker_costs_only_its_own_running_tasks(scripts: Scripts, keys: Keys) -> None:
    """reap_workers reads the running-by-worker index, which every way out of 'running' keeps
    (complete, fail, hand back, death), instead of every running task of the deployment."""
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("s1", []))
    await host(scripts, keys, "w2", ("s2", []))
    coord = await leader(scripts, keys, strategy="round_robin")
    await store.submit([(task_spec("m.x:f", id=f"t{i}"), i) for i in range(8)])
    assert await coord.dispatch_once() == 8
    mine = await store.claim("s1", "w1", 4)
    theirs = await store.claim("s2", "w2", 4)
    index = keys.task_keys.running_by_worker

    async def members() -> list[str]:
        raw: list[bytes] = await scripts.client.zrange(index, 0, -1)  # type: ignore[assignment]
        return sorted(m.decode() for m in raw)

    assert await members() == sorted([f"w1|{c.id}" for c in mine] + [f"w2|{c.id}" for c in theirs])
    a, b, c, d = theirs
    await store.complete(a.id, a.token, "w2", None)
    assert await store.fail(b.id, b.token, "boom") == "retry"
    assert await store.release({c.id: c.token}) == 1
    assert await members() == sorted([f"w1|{x.id}" for x in mine] + [f"w2|{d.id}"])

    assert await registry.reap_workers(30_000, worker_id="w1", graceful=False) == ["w1"]
    assert await members() == [f"w2|{d.id}"]
    for t in await store.get_many([x.id for x in mine]):
        assert t is not None and (t.status, t.attempts, t.worker) == ("failed", 1, "")
        assert "worker w1 died" in t.error
    assert (await store.get(d.id)).status == "running"  # w2's task untouched


async def test_a_worker_dying_with_many_tasks_is_reaped_in_bounded_steps(
    scripts: Scripts, keys: Keys
) -> None:
    """One reap_workers call handles at most 100 of a dead worker's running tasks; the registry's
    next rounds handle the rest (the worker waits in the gone set meanwhile)."""
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("s1", []), capacity=300)
    coord = await leader(scripts, keys, batch_size=300)
    await store.submit([(task_spec("m.x:f"), i) for i in range(150)])
    assert await coord.dispatch_once() == 150
    assert len(await store.claim("s1", "w1", 150)) == 150
    assert await registry.reap_workers(30_000, worker_id="w1", graceful=False) == ["w1"]
    counts = await store.counts()
    assert (counts["failed"], counts["running"]) == (100, 50)
    assert await scripts.client.zrange(keys.workers_gone, 0, -1) == [b"w1"]
    assert await registry.reap_workers(30_000) == []  # the next round: nobody new, the rest
    counts = await store.counts()
    assert (counts["failed"], counts["running"]) == (150, 0)
    assert await scripts.client.zcard(keys.workers_gone) == 0


async def test_the_queues_of_a_dead_workers_swarms_are_handed_back_in_bounded_steps(
    scripts: Scripts, keys: Keys
) -> None:
    """One reap_workers call hands back at most 100 queued tasks of the swarms a dead worker
    left without hosts; the swarms still holding some wait in {ns}:swarms:requeue for the
    registry's next rounds (a worker hosting 100 swarms took 27-45 ms in one call before)."""
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    swarms = [(f"s{i}", ["parse"]) for i in range(3)]
    await host(scripts, keys, "w1", *swarms, capacity=200)
    coord = await leader(scripts, keys, batch_size=500)
    specs = [(task_spec("m.x:f", capabilities=["parse"]), i) for i in range(450)]
    for start in range(0, len(specs), 50):
        await store.submit(specs[start : start + 50])
    while await coord.dispatch_once():
        pass
    assert (await store.counts())["assigned"] == 450
    assert await registry.reap_workers(30_000, worker_id="w1", graceful=False) == ["w1"]
    counts = await store.counts()
    assert (counts["ready"], counts["assigned"]) == (100, 350)
    assert {(await registry.get(s)).status for s, _ in swarms} == {"interrupted"}
    rounds = 1
    while await scripts.client.zcard(keys.swarm_requeue):
        assert await registry.reap_workers(30_000) == []  # nobody new: 100 more each round
        rounds += 1
        assert (await store.counts())["ready"] == min(450, 100 * rounds)
    assert rounds == 5
    counts = await store.counts()
    assert (counts["ready"], counts["assigned"]) == (450, 0)
    for task in await store.list("ready", 450):
        assert task.reason.endswith("interrupted") and task.swarm == ""
