"""Ready, assigned and running tasks have no status index (decision 61): counts and lists read
them off the ready, parked, leases and running-by-worker zsets, which must hold exactly the
tasks of those statuses through every transition."""

from __future__ import annotations

from collections import Counter

from multiswarm.keys import TASK_STATUSES, Keys
from multiswarm.messages import Task, decode_task
from multiswarm.ops.tasks import Outcome
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"


async def _records(store: TaskStore, keys: Keys) -> list[Task]:
    raw = await store.client.hvals(keys.tasks)
    return [decode_task(r) for r in raw]


async def _check(store: TaskStore, keys: Keys) -> Counter[str]:
    """counts() and list(status) agree with the records, for every status."""
    records = await _records(store, keys)
    truth = Counter(t.status for t in records)
    assert await store.counts() == {s: truth[s] for s in TASK_STATUSES}
    for s in TASK_STATUSES:
        listed = sorted(t.id for t in await store.list(s, limit=1000))
        assert listed == sorted(t.id for t in records if t.status == s), s
        if truth[s] > 1:
            assert len(await store.list(s, limit=1)) == 1
    everything = await store.list(None, limit=1000)
    assert sorted(t.id for t in everything) == sorted(t.id for t in records)
    return truth


async def test_counts_and_lists_follow_every_transition(scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("s", []), capacity=3)
    store, coord = TaskStore(scripts, keys), await leader(scripts, keys)
    # a task no swarm can take (parked: the second call has its parked zset), then six plain
    # ones and a dependent
    await store.submit([(task_spec(NOOP, id="gpu", capabilities=["gpu"]), 0)])
    for _ in range(2):
        await coord.dispatch_once()
    assert await store.client.zcard(keys.parked("gpu")) == 1
    specs = [(task_spec(NOOP, id=f"t{i}", max_attempts=2), i) for i in range(6)]
    specs.append((task_spec(NOOP, id="dep", depends_on=["t0"]), 9))
    await store.submit(specs)
    assert (await _check(store, keys))["ready"] == 7
    while await coord.dispatch_once():
        pass
    truth = await _check(store, keys)
    assert (truth["assigned"], truth["ready"], truth["pending"]) == (3, 4, 1)
    claimed = await store.claim("s", "w1", 2)
    assert (await _check(store, keys))["running"] == 2
    first, second = claimed
    assert await store.finish(
        "w1",
        [
            Outcome(first.id, first.token, "ok", b"\xc0"),
            Outcome(second.id, second.token, "error", "boom"),
        ],
    ) == ["completed", "retry"]
    # a parked task and a queued one cancelled: out of the parked zset and the ready zset
    assert await store.cancel("gpu") == "cancelled"
    assert await store.cancel("t5") == "cancelled"
    assert await store.client.zcard(keys.parked("gpu")) == 0
    truth = await _check(store, keys)
    assert truth["failed"] == 1 and truth["cancelled"] == 2 and truth["completed"] == 1
    # an assigned task cancelled leaves the leases zset
    (assigned,) = [t for t in await _records(store, keys) if t.status == "assigned"][:1]
    assert await store.cancel(assigned.id) == "cancelled"
    await _check(store, keys)


async def test_prune_deletes_the_indexes_earlier_versions_kept(
    scripts: Scripts, keys: Keys
) -> None:
    store = TaskStore(scripts, keys)
    for s in ("ready", "assigned", "running"):
        await store.client.zadd(keys.task_status(s), {"old": 1})
    await store.client.zadd(keys.task_status("pending"), {"kept": 1})
    await store.prune(60_000)
    for s in ("ready", "assigned", "running"):
        assert await store.client.exists(keys.task_status(s)) == 0
    assert await store.client.zcard(keys.task_status("pending")) == 1
