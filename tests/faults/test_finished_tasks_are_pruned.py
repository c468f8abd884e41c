"""Finished tasks outgrow Redis: one housekeeping round must forget every finished task past its
retention, however many there are, and everything the task owned with it."""

from __future__ import annotations

import asyncio
import functools

import pytest

from multiswarm.config import from_env
from multiswarm.errors import BadRequest, ConfigError
from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry, housekeeping
from multiswarm.scripts import Scripts
from multiswarm.services import run_registry
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import eventually, host, leader

NOOP = "multiswarm.demo_tasks:noop"


async def _round(store: TaskStore, ttl_ms: int) -> int:
    """One housekeeping round of the registry with a deployment result TTL of ``ttl_ms``."""
    return await housekeeping(
        SwarmRegistry(store.scripts, store.keys),
        archive_ms=7 * 24 * 3600 * 1000,
        result_ttl_ms=ttl_ms,
    )


async def _run_all(store: TaskStore, coord, n: int) -> None:  # type: ignore[no-untyped-def]
    done = 0
    while done < n:
        await coord.dispatch_once()
        for c in await store.claim("s", "w1", 500):
            assert await store.complete(c.id, c.token, "w1", {"r": c.id}) == "completed"
            done += 1


async def _leftovers(store: TaskStore, keys: Keys, ids: list[str]) -> dict[str, int]:
    """How many of ``ids`` still have a trace in each per-task structure."""
    c = store.client
    out = {}
    for name, key in (
        ("record", keys.tasks),
        ("payload", keys.payloads),
        ("result", keys.results),
        ("dependents", keys.task_keyset[3]),
    ):
        out[name] = sum(v is not None for v in await c.hmget(key, ids))
    for status in ("completed", "dead", "cancelled"):
        pipe = c.pipeline(transaction=False)
        for i in ids:
            pipe.zscore(keys.task_status(status), i)
        out[status] = sum(v is not None for v in await pipe.execute())
    out["completions"] = await c.xlen(keys.completions)
    return out


async def test_one_round_prunes_thousands_of_finished_tasks(scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("s", []), capacity=500)
    store, coord = TaskStore(scripts, keys), await leader(scripts, keys, batch_size=500)
    n = 3000
    ids = [f"t{i}" for i in range(n)]
    await store.submit([(task_spec(NOOP, id=i), {"in": i}) for i in ids])
    await _run_all(store, coord, n)
    # and the other ways to finish: dead-lettered, cancelled, cancelled by a dead dependency
    await store.submit(
        [
            (task_spec(NOOP, id="doomed"), None),
            (task_spec(NOOP, id="orphan", depends_on=["doomed"]), None),
            (task_spec(NOOP, id="unwanted"), None),
        ]
    )
    assert await store.cancel("unwanted") == "cancelled"
    await coord.dispatch_once()
    (c,) = await store.claim("s", "w1", 10)
    assert await store.fail(c.id, c.token, "boom", permanent=True) == "dead"
    ids += ["doomed", "orphan", "unwanted"]
    assert await store.counts() == {
        "pending": 0,
        "ready": 0,
        "assigned": 0,
        "running": 0,
        "completed": n,
        "failed": 0,
        "dead": 1,
        "cancelled": 2,
    }
    await asyncio.sleep(0.3)
    pruned = await _round(store, 200)
    assert pruned == n + 3 > 1000  # the old prune stopped at 1000 per status per round
    assert await _leftovers(store, keys, ids) == {
        "record": 0,
        "payload": 0,
        "result": 0,
        "dependents": 0,
        "completed": 0,
        "dead": 0,
        "cancelled": 0,
        "completions": 0,
    }
    assert await store.client.hlen(keys.task_keyset[3]) == 0  # no readers fields either
    for queue in (
        keys.task_retained,
        keys.ready,
        keys.task_keyset[5],
        keys.leases,
        keys.queue("s"),
    ):
        assert await store.client.zcard(queue) == 0, queue
    assert set(await store.stats()) <= {  # counters only: nothing kept per task
        "seq",
        "submitted",
        "executions",
        "completed",
        "dead",
        "cancelled",
        "retries",
    }
    assert await _round(store, 200) == 0


async def test_registry_process_prunes_as_it_goes(scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("s", []))
    store, coord = TaskStore(scripts, keys), await leader(scripts, keys)
    stop = asyncio.Event()
    registry = asyncio.create_task(
        run_registry(
            SwarmRegistry(scripts, keys),
            stop,
            heartbeat_timeout_ms=30_000,
            archive_ms=7 * 24 * 3600 * 1000,
            result_ttl_ms=100,
            housekeeping_s=0.1,
        )
    )
    try:
        for wave in range(3):
            batch = [f"w{wave}-{i}" for i in range(50)]
            await store.submit([(task_spec(NOOP, id=i), None) for i in batch])
            await _finish(store, coord, *batch)
            await eventually(functools.partial(_gone, store, batch), timeout_s=10, what="pruned")
    finally:
        stop.set()
        await asyncio.wait_for(registry, 10)


async def _gone(store: TaskStore, ids: list[str]) -> bool:
    return not any(await _exists(store, *ids))


def test_result_ttl_comes_from_the_environment() -> None:
    assert from_env({}).result_ttl_ms == 24 * 3600 * 1000
    assert from_env({"MULTISWARM_RESULT_TTL_MS": "5000"}).result_ttl_ms == 5000
    with pytest.raises(ConfigError):
        from_env({"MULTISWARM_RESULT_TTL_MS": "0"})
    with pytest.raises(BadRequest):
        task_spec(NOOP, result_ttl_ms=0)


async def _finish(store: TaskStore, coord, *ids: str) -> None:  # type: ignore[no-untyped-def]
    """Dispatch and complete exactly the tasks ``ids`` (they must be ready)."""
    left = set(ids)
    while left:
        assert await coord.dispatch_once() or await store.client.zcard(store.keys.queue("s")), (
            f"{sorted(left)} not dispatchable"
        )
        for c in await store.claim("s", "w1", 500):
            assert c.id in left, c.id
            assert await store.complete(c.id, c.token, "w1", c.id) == "completed"
            left.discard(c.id)


async def _exists(store: TaskStore, *ids: str) -> list[bool]:
    return [t is not None for t in await store.get_many(list(ids))]


async def test_per_task_ttl_overrides_the_deployment_ttl(scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("s", []), capacity=1000)
    store, coord = TaskStore(scripts, keys), await leader(scripts, keys, batch_size=1000)
    # more long-lived tasks than one prune call examines, finished first: they must not stand
    # in the way of the ones behind them
    long_ids = [f"long{i}" for i in range(700)]
    await store.submit([(task_spec(NOOP, id=i, result_ttl_ms=3_600_000), None) for i in long_ids])
    await _finish(store, coord, *long_ids)
    await store.submit(
        [
            (task_spec(NOOP, id="short", result_ttl_ms=100), None),
            (task_spec(NOOP, id="plain"), None),
        ]
    )
    await _finish(store, coord, "short", "plain")
    await asyncio.sleep(0.3)
    # deployment TTL one minute: only the task with its own 100 ms TTL is due
    assert await _round(store, 60_000) == 1
    assert await _exists(store, "short", "plain", "long0") == [False, True, True]
    # deployment TTL 100 ms: the plain task goes, the ones with their own hour stay
    assert await _round(store, 100) == 1
    assert await _exists(store, "plain", *long_ids) == [False] + [True] * len(long_ids)
    assert await store.results(long_ids[:3]) == {i: i for i in long_ids[:3]}
    assert await _round(store, 100) == 0


async def test_result_kept_while_a_dependent_may_read_it(scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("s", []))
    store, coord = TaskStore(scripts, keys), await leader(scripts, keys)
    await store.submit(
        [(task_spec(NOOP, id="a"), None), (task_spec(NOOP, id="b", depends_on=["a"]), None)]
    )
    await _finish(store, coord, "a")
    await store.submit([(task_spec(NOOP, id="c", depends_on=["a"]), None)])  # a already done
    await asyncio.sleep(0.3)
    await _round(store, 100)
    # b and c are ready and will read a's result when they run: a stays past its TTL
    assert await _exists(store, "a") == [True]
    await coord.dispatch_once()
    claimed = await store.claim("s", "w1", 10)
    assert sorted(c.id for c in claimed) == ["b", "c"]
    assert await store.results(["a"]) == {"a": "a"}
    for c in claimed:
        await store.complete(c.id, c.token, "w1", c.id)
    await asyncio.sleep(0.3)
    assert await _round(store, 100) == 3
    assert await _exists(store, "a", "b", "c") == [False, False, False]
    assert await store.client.hlen(keys.task_keyset[3]) == 0  # no dependents entry left behind


async def test_round_ends_while_many_results_are_held(scripts: Scripts, keys: Keys) -> None:
    """More held tasks than one call examines, each due again within a millisecond: a round
    judges as of its start, so it still ends (instead of re-checking them forever)."""
    await host(scripts, keys, "w1", ("s", []), capacity=1000)
    store, coord = TaskStore(scripts, keys), await leader(scripts, keys, batch_size=1000)
    deps = [f"d{i}" for i in range(600)]
    await store.submit([(task_spec(NOOP, id=d, result_ttl_ms=1), None) for d in deps])
    await _finish(store, coord, *deps)
    # each dependent is ready (its dependency completed) and never runs in this test
    await store.submit([(task_spec(NOOP, id=f"after-{d}", depends_on=[d]), None) for d in deps])
    await asyncio.sleep(0.1)
    for _ in range(3):
        assert await asyncio.wait_for(_round(store, 60_000), 30) == 0
    assert all(await _exists(store, *deps))


async def test_a_forgotten_reader_leaves_no_edge_behind(scripts: Scripts, keys: Keys) -> None:
    # A dependency in steady use: readers come and go while one (sorting first) stays
    # unfinished. Before, each forgotten reader's "a|<reader>" edge stayed in the readers zset
    # (forget_task dropped only the edges of the task's own readers, and the hold check stops
    # at the first live reader): one edge per dependent, for as long as the dependency was read.
    await host(scripts, keys, "w1", ("s", []), capacity=500)
    store, coord = TaskStore(scripts, keys), await leader(scripts, keys, batch_size=500)
    await store.submit([(task_spec(NOOP, id="a"), None)])
    await _finish(store, coord, "a")
    # (no swarm offers "never": it stays ready, unfinished, and sorts before every other)
    live = task_spec(NOOP, id="0-live", depends_on=["a"], capabilities=["never"])
    await store.submit([(live, None)])
    ended = [f"r{i}" for i in range(100)]
    await store.submit(
        [(task_spec(NOOP, id=r, depends_on=["a"], result_ttl_ms=1), None) for r in ended]
    )
    await _finish(store, coord, *ended)
    await asyncio.sleep(0.1)
    assert await _round(store, 60_000) == len(ended)  # the readers go, "a" stays held
    assert await _exists(store, "a", "0-live") == [True, True]
    edges = await store.client.zrange(keys.task_keys.readers, 0, -1)
    assert edges == [b"a|0-live"]
    # purged rather than pruned: the same
    await store.submit([(task_spec(NOOP, id="p1", depends_on=["a"]), None)])
    await _finish(store, coord, "p1")
    purged, held = await store.purge("completed")
    assert (purged, list(held)) == (1, ["a"])
    assert await store.client.zrange(keys.task_keys.readers, 0, -1) == [b"a|0-live"]
