"""The facade over P = 3 coordination partitions on one private Redis (decision 47): swarms
are placed and found, a DAG stays in one partition, independent tasks spread by backlog,
calls naming a task reach its partition, cross-partition dependencies are refused, and the
aggregate views add the partitions up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from multiswarm import (
    CrossPartitionError,
    InvalidArgumentError,
    Multiswarm,
    NotFound,
    TaskOptions,
    UnknownDependency,
    partition_api,
)
from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.http.metrics import exposition, gather
from multiswarm.keys import Keys
from multiswarm.partition_routes import covering
from multiswarm.partitions import partition_capabilities, place_swarms
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from ..integration.helpers import host, leader

P = 3


@pytest.fixture
def psettings(settings: Settings) -> Settings:
    return settings.replace(partitions=P)


@pytest.fixture
async def ms(psettings: Settings) -> AsyncIterator[Multiswarm]:
    facade = await Multiswarm.connect(settings=psettings, actor="tester")
    yield facade
    await facade.close()


@pytest.fixture
async def fresh(psettings: Settings) -> AsyncIterator[Multiswarm]:
    """A second facade: nothing remembered, so every route is looked up in Redis."""
    facade = await Multiswarm.connect(settings=psettings, actor="other")
    yield facade
    await facade.close()


def pkeys(ns: str) -> list[Keys]:
    return Keys.all(ns, P)


async def where_task(client: Client, ns: str, tid: str) -> list[int]:
    return [k for k, keys in enumerate(pkeys(ns)) if await client.hexists(keys.tasks, tid)]


async def where_swarm(client: Client, ns: str, sid: str) -> list[int]:
    return [k for k, keys in enumerate(pkeys(ns)) if await client.hexists(keys.swarms, sid)]


async def six_swarms(ms: Multiswarm) -> None:
    for i in range(3):
        assert await ms.create_swarm(f"parse{i}", ["parse"]) == "created"
        assert await ms.create_swarm(f"embed{i}", ["embed"]) == "created"


async def test_swarms_are_placed_and_found(
    ms: Multiswarm, fresh: Multiswarm, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    placed = {
        sid: await where_swarm(client, namespace, sid)
        for sid in [f"{kind}{i}" for kind in ("parse", "embed") for i in range(3)]
    }
    assert all(len(ks) == 1 for ks in placed.values()), placed
    # alike swarms spread: each partition holds one of each kind
    assert sorted(placed[f"parse{i}"][0] for i in range(3)) == [0, 1, 2]
    assert sorted(placed[f"embed{i}"][0] for i in range(3)) == [0, 1, 2]
    for sid in placed:
        assert (await fresh.get_swarm(sid)).id == sid
    assert [s.id for s in await fresh.list_swarms()] == sorted(placed)
    assert await ms.create_swarm("parse1", ["other"]) == "exists"  # stays where it is
    assert await where_swarm(client, namespace, "parse1") == placed["parse1"]
    # placed again with other capabilities (a worker hosting it with others: the worker's path
    # has no create_swarm guard), it stays too: moved, its record and tasks stayed behind and a
    # second record was made in the new partition (found in review)
    # (s, t, w of one set spread over the three partitions, u of another beside s: placed
    # afresh with u's set, s would go where none of that set is)
    first = await place_swarms(ms.scripts, ms.settings, [(x, ["aa"]) for x in "stw"])
    assert sorted(first) == [0, 1, 2]
    [u] = await place_swarms(ms.scripts, ms.settings, [("u", ["bb"])])
    assert u == first[0]
    assert await place_swarms(ms.scripts, ms.settings, [("s", ["bb"])]) == [first[0]]
    with pytest.raises(NotFound):
        await fresh.get_swarm("nosuch")
    assert await fresh.pause_swarm("embed2") and (await ms.get_swarm("embed2")).paused
    with pytest.raises(InvalidArgumentError, match="ambiguous"):
        await fresh.resolve_swarm_id("emb")
    assert await fresh.resolve_swarm_id("embed1") == "embed1"
    stats = await fresh.statistics()
    assert stats.swarms == {"initializing": 6}
    assert len((await fresh.status()).swarms) == 6
    # deleting unplaces: a new swarm of that id may go anywhere
    assert await fresh.fail_swarm("parse0") == "initializing"
    assert await fresh.delete_swarm("parse0") == "failed"
    with pytest.raises(NotFound):
        await ms.get_swarm("parse0")
    assert not await client.hexists(pkeys(namespace)[0].swarm_partitions, "parse0")


async def test_a_dag_stays_in_one_partition(
    ms: Multiswarm, fresh: Multiswarm, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    receipts = await ms.submit_tasks(
        [
            ("m:a", 1, TaskOptions(id="a", capabilities=["parse"])),
            ("m:b", 2, TaskOptions(id="b", capabilities=["embed"], depends_on=["a"])),
            ("m:c", 3, TaskOptions(id="c", capabilities=["parse"], depends_on=["a", "b"])),
        ]
    )
    assert [(r.id, r.status) for r in receipts] == [
        ("a", "ready"),
        ("b", "pending"),
        ("c", "pending"),
    ]
    [k] = await where_task(client, namespace, "a")
    assert await where_task(client, namespace, "b") == [k]
    assert await where_task(client, namespace, "c") == [k]
    # a dependent submitted later, by another client, follows its dependencies
    d = await fresh.distribute_task("m:d", depends_on=["c"], capabilities=["embed"])
    assert await where_task(client, namespace, d) == [k]
    assert (await fresh.get_task("c")).status == "pending"


async def test_independent_tasks_spread_by_backlog(
    ms: Multiswarm, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    ids = [await ms.distribute_task("m:f", i, capabilities=["parse"]) for i in range(6)]
    spots = [(await where_task(client, namespace, t))[0] for t in ids]
    assert sorted(spots) == [0, 0, 1, 1, 2, 2], spots
    counts = (await ms.statistics()).tasks
    assert counts["ready"] == 6 and sum(counts.values()) == 6
    assert (await ms.statistics()).counters.submitted == 6
    assert (await ms.status()).tasks["ready"] == 6
    assert len(await ms.list_tasks("ready", limit=4)) == 4
    assert {t.id for t in await ms.list_tasks(limit=50)} == set(ids)


async def test_tasks_are_found_in_their_partition(
    ms: Multiswarm, fresh: Multiswarm, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    ids = [await ms.distribute_task("m:f", i, capabilities=["embed"]) for i in range(3)]
    [in2] = [t for t in ids if await where_task(client, namespace, t) == [2]]
    assert (await fresh.get_task(in2)).status == "ready"
    assert await fresh.resolve_task_id(in2[:12]) == in2
    assert await fresh.cancel_task(in2, "no longer needed") == "cancelled"
    assert (await ms.get_task(in2)).status == "cancelled"
    assert await fresh.retry_tasks([in2, "nosuch"]) == {in2: "retried", "nosuch": "not_found"}
    assert (await ms.get_task(in2)).status == "ready"
    with pytest.raises(NotFound):
        await fresh.get_task("nosuch")
    with pytest.raises(UnknownDependency):  # found in no partition: refused as with one
        await fresh.distribute_task("m:f", depends_on=["nosuch"])
    with pytest.raises(NotFound):
        await fresh.get_result(in2)  # not completed
    with pytest.raises(TimeoutError):
        await fresh.wait_for(in2, timeout_s=0.2)
    assert await fresh.cancel_task(in2) == "cancelled"
    assert await fresh.purge_tasks("cancelled") == (1, [])
    assert await where_task(client, namespace, in2) == []
    assert await fresh.plan_recoveries() == {} and await fresh.list_recoveries() == []


async def test_cross_partition_dependencies_are_refused(
    ms: Multiswarm, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    ids = [await ms.distribute_task("m:f", i, capabilities=["parse"]) for i in range(3)]
    where = {t: (await where_task(client, namespace, t))[0] for t in ids}
    first, second = sorted(ids, key=lambda t: where[t])[:2]
    before = (await ms.statistics()).tasks
    with pytest.raises(CrossPartitionError) as err:
        await ms.distribute_task("m:g", id="joined", depends_on=[first, second])
    message = str(err.value)
    assert "\n" not in message and first in message and second in message
    assert f"partition {where[first]}" in message and "refused" in message
    assert isinstance(err.value, InvalidArgumentError)
    assert (await ms.statistics()).tasks == before
    assert await where_task(client, namespace, "joined") == []


async def test_a_repeated_id_goes_where_it_is(
    ms: Multiswarm, fresh: Multiswarm, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    for i in range(4):
        await ms.distribute_task("m:f", i, id=f"u{i}", capabilities=["parse"])
    homes = {f"u{i}": await where_task(client, namespace, f"u{i}") for i in range(4)}
    for i in range(4):
        receipt = await fresh.submit_task("m:f", i, TaskOptions(id=f"u{i}", capabilities=["parse"]))
        assert receipt.status == "exists"  # as with one partition: nothing changed
        assert await where_task(client, namespace, f"u{i}") == homes[f"u{i}"]
    assert (await ms.statistics()).counters.submitted == 4


async def test_leaders_of_every_partition(ms: Multiswarm, scripts: Scripts, namespace: str) -> None:
    assert await ms.leader() is None
    assert (await ms.health()).reason == "no leader holds the lease"
    await leader(scripts, pkeys(namespace)[1])
    now = await ms.leader()
    assert now is not None and now.epoch == 1
    assert [(p.partition, p.holder is not None) for p in now.partitions] == [
        (0, False),
        (1, True),
        (2, False),
    ]
    report = await ms.health()
    assert not report.ok and report.reason == "no leader holds the lease of partitions 0, 2"
    await leader(scripts, pkeys(namespace)[0])
    await leader(scripts, pkeys(namespace)[2])
    report = await ms.health()
    assert report.ok and report.reason.startswith("leaders p0 ")
    body = msgspec.json.decode(msgspec.json.encode(await ms.leader()))
    assert [p["partition"] for p in body["partitions"]] == [0, 1, 2]
    # /metrics: one epoch gauge per partition (each leader above is its partition's first)
    text = exposition(await gather(ms)).decode()
    for k in range(3):
        assert f'multiswarm_partition_leader_epoch{{partition="{k}"}} 1.0' in text


async def test_resource_pools_are_split_over_partitions(ms: Multiswarm) -> None:
    assert await ms.init_resource_pool("gpu", 10) == "created"
    [pool] = await ms.list_resources()
    assert (pool.type, pool.capacity, pool.free) == ("gpu", 10, 10)
    assert await ms.init_resource_pool("gpu", 10) == "unchanged"
    assert await ms.init_resource_pool("gpu", 7) == "resized"
    assert (await ms.list_resources())[0].capacity == 7
    await ms.create_swarm("s", ["x"])
    assert await ms.release_resources("s") == {}
    assert await ms.release_resources("nosuch") == {}


async def test_wait_for_reads_the_partition_of_the_task(
    ms: Multiswarm, fresh: Multiswarm, scripts: Scripts, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    ids = [await ms.distribute_task("m:f", {"n": i}, capabilities=["parse"]) for i in range(3)]
    [tid] = [t for t in ids if await where_task(client, namespace, t) == [2]]
    keys = pkeys(namespace)[2]
    [sid] = [
        s.id
        for s in await ms.list_swarms()
        if s.id.startswith("parse")
        if await where_swarm(client, namespace, s.id) == [2]
    ]
    await host(scripts, keys, "w2", (sid, ["parse"]))
    coord = await leader(scripts, keys)
    assert await coord.dispatch_once() >= 1
    store = TaskStore(scripts, keys)
    claimed = await store.claim(sid, "w2", 10)
    mine = {c.id: c for c in claimed}
    assert tid in mine
    waiter = asyncio.create_task(fresh.wait_for(tid, timeout_s=10))
    await asyncio.sleep(0.1)
    assert await store.complete(tid, mine[tid].token, "w2", {"n": 99}) == "completed"
    assert await asyncio.wait_for(waiter, 10) == {"n": 99}
    assert await ms.get_result(tid) == {"n": 99}


async def test_one_partition_routes_without_redis(settings: Settings) -> None:
    gone = settings.replace(redis_url="redis://127.0.0.1:1/0", reconnect_timeout_s=0.1)
    ms = Multiswarm(connect(gone), gone)
    try:
        assert await partition_api.host_for_swarm(ms, "s") is ms
        assert await partition_api.host_for_task(ms, "t") is ms
        spec = task_spec("m:f", id="t", depends_on=["u"], capabilities=["x"])
        assert await partition_api.route_submission(ms, [spec], ["t"]) is ms
        assert ms.parts == [ms]
    finally:
        await ms.close()


async def test_recovery_of_a_swarm_in_another_partition(
    ms: Multiswarm, fresh: Multiswarm, scripts: Scripts, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    [sid] = [
        s for s in ("embed0", "embed1", "embed2") if await where_swarm(client, namespace, s) == [1]
    ]
    keys = pkeys(namespace)[1]
    await host(scripts, keys, "w1", (sid, ["embed"]))
    assert await fresh.save_state(sid, {"step": 3}) == 1
    assert await ms.parts[1].registry.transition(sid, "interrupted") == "active"
    [plan] = await fresh.list_recoveries()
    assert plan.swarm == sid and plan.source == "state"
    outcome = await fresh.recover_swarm(sid)
    assert outcome.outcome in ("applied", "resumed"), outcome
    assert (await ms.get_swarm(sid)).status != "interrupted"


async def test_concurrent_submissions_spread(
    ms: Multiswarm, client: Client, namespace: str
) -> None:
    await six_swarms(ms)
    ids = await asyncio.gather(
        *(ms.distribute_task("m:f", i, capabilities=["embed"]) for i in range(9))
    )
    spots = [(await where_task(client, namespace, t))[0] for t in ids]
    assert sorted(spots) == [0, 0, 0, 1, 1, 1, 2, 2, 2], spots


async def test_concurrent_submissions_of_one_new_id_meet_in_one_partition(
    ms: Multiswarm, fresh: Multiswarm, client: Client, namespace: str
) -> None:
    # Two facades that each see another partition as the least busy both route a new id
    # before either submits it (the race of two producers given the same idempotency key):
    # the id is reserved for the partition routed first, so both submissions meet there and
    # the task exists once, never in two partitions (two runs).
    await six_swarms(ms)
    ms.routes.set_backlog([0, 9, 9])
    fresh.routes.set_backlog([9, 0, 9])
    spec = [task_spec("m:f", id="dup", capabilities=["parse"])]
    first = await partition_api.route_submission(ms, spec, ["dup"])
    second = await partition_api.route_submission(fresh, spec, ["dup"])
    assert first.keys.partition == second.keys.partition == 0
    # a batch naming the reserved id with another new one goes there too, all of it
    both = [task_spec("m:f", id="dup", capabilities=["parse"]), task_spec("m:f", id="dup2")]
    fresh.routes.set_backlog([9, 0, 9])
    assert (await partition_api.route_submission(fresh, both, ["dup", "dup2"])).keys.partition == 0
    # through the facade, concurrently, from three facades with different views
    ms.routes.set_backlog([9, 9, 0])
    fresh.routes.set_backlog([9, 0, 9])
    receipts = await asyncio.gather(
        ms.submit_task("m:f", 1, TaskOptions(id="race", capabilities=["parse"])),
        fresh.submit_task("m:f", 1, TaskOptions(id="race", capabilities=["parse"])),
    )
    assert sorted(r.status for r in receipts) == ["exists", "ready"]
    assert len(await where_task(client, namespace, "race")) == 1
    assert (await ms.statistics()).counters.submitted == 1


async def test_reservations_that_disagree_are_refused(ms: Multiswarm, fresh: Multiswarm) -> None:
    # two new ids reserved for different partitions cannot be one batch (nothing submitted)
    await six_swarms(ms)
    ms.routes.set_backlog([0, 9, 9])
    await partition_api.route_submission(ms, [task_spec("m:f", id="a1")], ["a1"])
    ms.routes.set_backlog([9, 0, 9])
    await partition_api.route_submission(ms, [task_spec("m:f", id="b1")], ["b1"])
    with pytest.raises(CrossPartitionError) as err:
        await fresh.submit_tasks(
            [("m:f", 1, TaskOptions(id="a1")), ("m:f", 2, TaskOptions(id="b1"))]
        )
    assert "a1 (partition 0)" in str(err.value) and "b1 (partition 1)" in str(err.value)
    assert await fresh.list_tasks(limit=10) == []


async def test_an_archived_swarm_leaves_the_directory(
    ms: Multiswarm, client: Client, namespace: str
) -> None:
    # Before, the directory kept every swarm ever placed (one field each, and its counts): a
    # partition whose only "parse" swarm was archived still drew "parse" tasks, and a
    # deployment making short-lived swarms grew the directory without end.
    from multiswarm.registry import housekeeping

    assert await ms.create_swarm("brief", ["rare"]) == "created"
    [k] = await where_swarm(client, namespace, "brief")
    control = pkeys(namespace)[0]
    assert await client.hget(control.partition_caps, f"{k}|rare") == b"1"
    assert await ms.fail_swarm("brief") == "initializing"
    part = ms.parts[k]
    await housekeeping(part.registry, archive_ms=0, result_ttl_ms=60_000)
    assert await where_swarm(client, namespace, "brief") == []
    assert not await client.hexists(control.swarm_partitions, "brief")
    # its counts went with it, fields included (zero-count fields stayed for every set ever)
    caps = await client.hgetall(control.partition_caps)
    assert not [f for f in caps if b"rare" in f], caps
    assert covering(["rare"], await partition_capabilities(ms.scripts, ms.settings)) == []


async def test_a_refused_registration_leaves_no_placement(
    psettings: Settings, client: Client, namespace: str
) -> None:
    # Placed, then refused by its partition (full): before, the directory kept it (and its
    # counts), a swarm that exists nowhere
    from multiswarm import CapacityExceeded

    facade = await Multiswarm.connect(settings=psettings.replace(max_swarms=1), actor="full")
    try:
        for i in range(P):
            assert await facade.create_swarm(f"f{i}", ["x"]) == "created"
        with pytest.raises(CapacityExceeded):
            await facade.create_swarm("extra", ["x"])
        control = pkeys(namespace)[0]
        assert not await client.hexists(control.swarm_partitions, "extra")
        assert (
            sum(int(v) for v in (await client.hgetall(control.partition_caps)).values() if v)
            == 3 * P
        )  # each placed swarm counted under *, =x and x
    finally:
        await facade.close()
