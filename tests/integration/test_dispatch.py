"""The leader's four distribution strategies, capability filtering and back-pressure."""

from __future__ import annotations

from multiswarm.keys import Keys
from multiswarm.messages import Task
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"


async def _submit(store: TaskStore, n: int, prefix: str = "t", **options: object) -> list[str]:
    specs = [task_spec(NOOP, id=f"{prefix}{i:03d}", **options) for i in range(n)]  # type: ignore[arg-type]
    await store.submit([(s, None) for s in specs])
    return [s.id for s in specs]


async def _placement(store: TaskStore, ids: list[str]) -> list[str]:
    tasks = await store.get_many(ids)
    return [t.swarm for t in tasks if isinstance(t, Task)]


async def test_least_loaded_spreads_and_prefers_the_idle(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", []), ("b", []), ("c", []))
    coord = await leader(scripts, keys, "least_loaded")
    ids = await _submit(store, 6)
    assert await coord.dispatch_once() == 6
    assert await _placement(store, ids) == ["a", "b", "c", "a", "b", "c"]
    # a finishes its two tasks: it is now the least loaded and gets the next ones
    for c in await store.claim("a", "w1", 10):
        assert await store.complete(c.id, c.token, "w1", None) == "completed"
    more = await _submit(store, 4, prefix="m")
    await coord.dispatch_once()
    # loads a=0 b=2 c=2: a twice, then all tie at 2 and ties go by id, then b
    assert await _placement(store, more) == ["a", "a", "a", "b"]


async def test_round_robin_cursor_survives_failover(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", []), ("b", []), ("c", []))
    first = await leader(scripts, keys, "round_robin")
    ids = await _submit(store, 2)
    await first.dispatch_once()
    assert await _placement(store, ids) == ["a", "b"]
    # the leader dies; its successor continues where the cursor (in Redis) stands
    await scripts.client.delete(keys.leader)
    second = await leader(scripts, keys, "round_robin")
    assert second.election.epoch == first.election.epoch + 1
    more = await _submit(store, 4, prefix="m")
    await second.dispatch_once()
    assert await _placement(store, more) == ["c", "a", "b", "c"]


async def test_priority_matches_task_to_swarm_priority(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    await host(
        scripts,
        keys,
        "w1",
        ("hi", []),
        ("mid", []),
        ("lo", []),
        priority={"hi": "high", "mid": "normal", "lo": "low"},
    )
    coord = await leader(scripts, keys, "priority")
    placed = {}
    for prio in ("low", "high", "normal"):
        (tid,) = await _submit(store, 1, prefix=prio, priority=prio)
        placed[prio] = tid
    await coord.dispatch_once()
    got = dict(zip(placed, await _placement(store, list(placed.values()))))
    assert got == {"low": "lo", "high": "hi", "normal": "mid"}


async def test_priority_falls_back_to_the_nearest_tier(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    await host(
        scripts, keys, "w1", ("mid", []), ("lo", []), priority={"mid": "normal", "lo": "low"}
    )
    coord = await leader(scripts, keys, "priority")
    (tid,) = await _submit(store, 1, priority="high")
    await coord.dispatch_once()
    assert await _placement(store, [tid]) == ["mid"]


async def test_capability_best_fit_and_unplaceable_tasks(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    await host(
        scripts,
        keys,
        "w1",
        ("generalist", ["parse", "compress", "reduce"]),
        ("parser", ["parse"]),
        ("packer", ["parse", "compress"]),
    )
    coord = await leader(scripts, keys, "capability")
    parse = await _submit(store, 3, prefix="p", capabilities=["parse"])
    both = await _submit(store, 1, prefix="b", capabilities=["parse", "compress"])
    gpu = await _submit(store, 1, prefix="g", capabilities=["gpu"])
    assert await coord.dispatch_once() == 4
    assert await _placement(store, parse) == ["parser"] * 3  # fewest extra capabilities
    assert await _placement(store, both) == ["packer"]
    (stuck,) = await store.get_many(gpu)
    assert stuck is not None and stuck.status == "ready"
    assert stuck.reason == "no active swarm has capabilities [gpu]"


async def test_every_strategy_respects_capabilities(scripts: Scripts, keys: Keys) -> None:
    for strategy in ("least_loaded", "round_robin", "priority", "capability"):
        ns_keys = Keys(f"{keys.ns}{strategy.replace('_', '')}")
        store = TaskStore(scripts, ns_keys)
        await host(scripts, ns_keys, "w1", ("x", ["parse"]), ("y", ["compress"]))
        coord = await leader(scripts, ns_keys, strategy)
        p = await _submit(store, 4, prefix="p", capabilities=["parse"])
        c = await _submit(store, 4, prefix="c", capabilities=["compress"])
        assert await coord.dispatch_once() == 8
        assert await _placement(store, p) == ["x"] * 4, strategy
        assert await _placement(store, c) == ["y"] * 4, strategy


async def test_capacity_back_pressure_and_batches(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", []), capacity=3)
    coord = await leader(scripts, keys, batch_size=2)
    ids = await _submit(store, 5)
    assert await coord.dispatch_once() == 2  # one batch
    assert await coord.dispatch_once() == 1  # capacity 3 reached
    assert await coord.dispatch_once() == 0
    tasks = await store.get_many(ids)
    assert [t.status for t in tasks if t] == ["assigned"] * 3 + ["ready"] * 2
    # every swarm is full: the rest queue in ready, in order, with nothing to report (looked
    # at, each would only be parked and promoted again when a slot frees)
    assert tasks[4] is not None and tasks[4].reason == ""
    assert (await store.counts())["assigned"] == 3
