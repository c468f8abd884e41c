"""The fixed per-call cost cuts of dispatch, claim and finish (decision 83) keep every guarantee.

A call that wrote nothing (an idle dispatch, a claim that found no task) records no request
outcome: running it again is what replaying "nothing" would give. A call that wrote still
replays its recorded outcome on a retry with the same request id: no task is assigned or
claimed twice, no completion recorded twice. Keys read with the request key in one MGET (the
epoch, the leader lease, the round-robin cursor, the events watch) decide as a GET of each did.
An idle dispatch returns before the swarm indexes: a held swarm whose host beats again is still
picked up by the next call with work.
"""

from __future__ import annotations

import re
from typing import cast

import pytest

from multiswarm import errors
from multiswarm.connection import Client
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.keys import Keys, request_key
from multiswarm.messages import Task
from multiswarm.ops import leadership as ops_leadership
from multiswarm.ops import tasks as ops_tasks
from multiswarm.ops.tasks import Outcome
from multiswarm.registry import SwarmRegistry
from multiswarm.script_headers import prefetch_arg, prefetch_keys
from multiswarm.script_library import lua_dir
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader, stream_entries

NOOP = "multiswarm.demo_tasks:noop"


class FixedRequest(Scripts):
    """Scripts whose every call carries request id ``rid``: a second call with the same id
    is a client's retry of the first."""

    rid = "r1"

    def _request_key(self, first_key: str) -> str:
        return request_key(first_key, self.rid)


async def request_records(scripts: Scripts, keys: Keys) -> list[bytes]:
    prefix = request_key(keys.task_keyset[0], "x")[:-1]
    return [k async for k in scripts.client.scan_iter(match=prefix + "*")]


async def dispatch(scripts: Scripts, coord: SwarmCoordinator) -> ops_leadership.Dispatched:
    _, reply = await ops_leadership.dispatch_tasks(
        scripts,
        coord.keys,
        coord.election.fence,
        strategy=coord.strategy,
        batch=8,
        scan=32,
        assign_timeout_ms=30_000,
        heartbeat_timeout_ms=coord.heartbeat_timeout_ms,
        capsets=[],
    )
    return reply


async def retry_setup(
    client: Client, keys: Keys
) -> tuple[FixedRequest, Scripts, SwarmCoordinator, TaskStore]:
    """Swarm s hosted by w1 and a leader: the scripts whose request id a test fixes (to send a
    call and its retry), plain scripts, the leader and a task store on the plain ones."""
    plain = Scripts(client)
    await host(plain, keys, "w1", ("s", []))
    coord = await leader(plain, keys)
    return FixedRequest(client), plain, coord, TaskStore(plain, keys)


async def fail_once(store: TaskStore, coord: SwarmCoordinator) -> None:
    """Task t1 assigned to swarm s, claimed by w1 and failed once: delayed 60 s for its retry."""
    await store.submit([(task_spec(NOOP, id="t1", max_attempts=3, backoff_ms=60_000), None)])
    assert await coord.dispatch_once() == 1
    (c,) = await store.claim("s", "w1", 1)
    assert await store.finish("w1", [Outcome(c.id, c.token, "error", "boom")]) == ["retry"]


async def test_idle_calls_write_no_request_record(scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("s", []))
    coord = await leader(scripts, keys)
    store = TaskStore(scripts, keys)
    before = sorted(await request_records(scripts, keys))  # hosting's and the election's
    for _ in range(3):
        reply = await dispatch(scripts, coord)
        assert (reply.assigned, reply.more, reply.parked_sets, reply.first_due_ms) == (
            0,
            False,
            [],
            -1,
        )
        assert await store.claim("s", "w1", 4) == []
    assert sorted(await request_records(scripts, keys)) == before
    # a call that wrote records its outcome
    await store.submit([(task_spec(NOOP, id="t1"), None)])
    assert await coord.dispatch_once() == 1
    assert len(await request_records(scripts, keys)) == len(before) + 2  # submit, dispatch


async def test_an_idle_dispatch_reports_the_first_delayed_task(
    scripts: Scripts, keys: Keys
) -> None:
    await host(scripts, keys, "w1", ("s", []))
    coord = await leader(scripts, keys)
    store = TaskStore(scripts, keys)
    await fail_once(store, coord)
    reply = await dispatch(scripts, coord)
    assert reply.assigned == 0 and reply.promoted == 0
    assert 0 < reply.first_due_ms <= 60_000


async def test_a_retried_call_that_wrote_replays_its_outcome(client: Client, keys: Keys) -> None:
    scripts, plain, coord, store = await retry_setup(client, keys)
    await store.submit([(task_spec(NOOP, id=t), None) for t in ("a", "b")])

    scripts.rid = "dispatch-1"
    first = await dispatch(scripts, coord)
    await store.submit([(task_spec(NOOP, id="c"), None)])
    again = await dispatch(scripts, coord)  # the retry: the same reply, c not assigned
    assert again == first and first.assigned == 2
    assert (await store.get("c")).status == "ready"

    scripts.rid = "claim-1"
    claimed = await ops_tasks.claim_tasks(scripts, keys, swarm_id="s", worker_id="w1", count=2)
    replayed = await ops_tasks.claim_tasks(scripts, keys, swarm_id="s", worker_id="w1", count=2)
    assert [r.id for r in replayed] == [r.id for r in claimed] and len(claimed) == 2
    assert [r.token for r in replayed] == [r.token for r in claimed]
    for t in ("a", "b"):
        task = await store.get(t)
        assert task.status == "running" and task.attempts == 1

    scripts.rid = "finish-1"
    outcomes = [Outcome(r.id, r.token, "ok", b"\xc0") for r in claimed]
    done = await ops_tasks.finish_tasks(scripts, keys, "w1", outcomes, seed=1)
    assert await ops_tasks.finish_tasks(scripts, keys, "w1", outcomes, seed=1) == done
    assert done == ["completed", "completed"]
    assert len(await stream_entries(plain.client, keys.task_keyset[8])) == 2
    stats = await store.stats()
    assert stats["completed"] == 2 and stats.get("duplicate_results", 0) == 0


async def test_an_idle_claim_retried_claims_what_came_since(client: Client, keys: Keys) -> None:
    """No record of a claim that found nothing: its retry runs again and may claim a task
    queued meanwhile (the first run claimed none, so none is claimed twice)."""
    scripts, _plain, coord, store = await retry_setup(client, keys)
    scripts.rid = "claim-idle"
    assert await ops_tasks.claim_tasks(scripts, keys, swarm_id="s", worker_id="w1", count=1) == []
    await store.submit([(task_spec(NOOP, id="t1"), None)])
    assert await coord.dispatch_once() == 1
    (got,) = await ops_tasks.claim_tasks(scripts, keys, swarm_id="s", worker_id="w1", count=1)
    assert got.id == "t1" and got.attempts == 1


async def test_an_idle_dispatch_that_released_dependents_replays(
    client: Client, keys: Keys
) -> None:
    """A dispatch with nothing to assign that released dependents left waiting (the finish's
    budget, WAITING_BUDGET 25, ran out) wrote: it records its outcome, and its retry replays
    it rather than running again."""
    scripts, plain, coord, store = await retry_setup(client, keys)
    await store.submit([(task_spec(NOOP, id=t), None) for t in ("p", "g")])
    assert await coord.dispatch_once() == 2
    claimed = {c.id: c for c in await store.claim("s", "w1", 2)}
    kids = [f"k{i}" for i in range(30)]  # each waits on p and on g (running: stays pending)
    await store.submit([(task_spec(NOOP, id=k, depends_on=["p", "g"]), None) for k in kids])
    p = claimed["p"]
    assert await store.finish("w1", [Outcome(p.id, p.token, "ok", b"\xc0")]) == ["completed"]
    waiting = keys.task_keyset[16]

    async def left_of_p() -> list[bytes]:
        entries = cast(list[bytes], await client.zrange(waiting, 0, -1))
        return [e for e in entries if e.startswith((b"p|", b"!"))]

    assert len(await left_of_p()) == 6  # the finish's budget left 5 edges and the release
    before = len(await request_records(plain, keys))

    scripts.rid = "dispatch-drain"
    first = await dispatch(scripts, coord)
    assert (first.assigned, first.promoted, first.more) == (0, 0, False)
    assert await left_of_p() == []  # released: written
    assert len(await request_records(plain, keys)) == before + 1  # the call wrote: recorded
    await store.submit([(task_spec(NOOP, id="x"), None)])
    assert await dispatch(scripts, coord) == first  # the retry: replayed, x not assigned
    assert (await store.get("x")).status == "ready"
    for t in await store.get_many(kids):
        assert isinstance(t, Task) and t.status == "pending"
    assert await coord.dispatch_once() == 1  # a new call (new request id) assigns x


async def test_a_dispatch_that_promoted_a_due_task_replays(client: Client, keys: Keys) -> None:
    """A dispatch that promoted a due delayed task wrote: its retry replays, never runs
    again."""
    scripts, plain, coord, store = await retry_setup(client, keys)
    await fail_once(store, coord)
    await client.zadd(keys.task_keyset[5], {"t1": 0})  # its backoff is over: due now
    before = len(await request_records(plain, keys))

    scripts.rid = "dispatch-promote"
    first = await dispatch(scripts, coord)
    assert (first.assigned, first.promoted) == (1, 1)
    assert len(await request_records(plain, keys)) == before + 1
    await store.submit([(task_spec(NOOP, id="x"), None)])
    assert await dispatch(scripts, coord) == first  # the retry: replayed, x not assigned
    assert (await store.get("x")).status == "ready"
    t1 = await store.get("t1")
    assert t1.status == "assigned" and t1.attempts == 1


async def test_a_claim_that_only_dropped_stale_entries_records_nothing(
    client: Client, keys: Keys
) -> None:
    """A claim that claimed nothing but dropped queue entries whose task moved on (here
    cancelled while assigned, its entry left as an earlier version left it) records no
    outcome; its retry finds nothing and changes nothing."""
    scripts, plain, coord, store = await retry_setup(client, keys)
    await store.submit([(task_spec(NOOP, id="t1"), None)])
    assert await coord.dispatch_once() == 1
    await store.cancel("t1")
    queue = keys.queue("s")
    assert await client.zrange(queue, 0, -1) == []  # the cancel took it out (decision 118)
    await client.zadd(queue, {"t1": 0})  # as before decision 118: the stale entry stayed
    assert await client.zrange(queue, 0, -1) == [b"t1"]
    before = sorted(await request_records(plain, keys))

    scripts.rid = "claim-stale"
    assert await ops_tasks.claim_tasks(scripts, keys, swarm_id="s", worker_id="w1", count=2) == []
    assert await client.exists(queue) == 0  # dropped
    assert sorted(await request_records(plain, keys)) == before  # no record
    stats = await store.stats()
    assert await ops_tasks.claim_tasks(scripts, keys, swarm_id="s", worker_id="w1", count=2) == []
    assert sorted(await request_records(plain, keys)) == before
    assert await client.exists(queue) == 0 and await store.stats() == stats
    t1 = await store.get("t1")
    assert t1.status == "cancelled" and t1.attempts == 0


async def test_prefetched_fencing_keys_still_refuse(scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("s", []))
    coord = await leader(scripts, keys)
    fence = coord.election.fence
    await scripts.client.incr(keys.epoch)  # a newer leader was elected
    with pytest.raises(errors.StaleEpoch):
        await dispatch(scripts, coord)
    await scripts.client.decr(keys.epoch)
    await scripts.client.delete(keys.leader)  # the lease expired
    with pytest.raises(errors.StaleEpoch):
        await dispatch(scripts, coord)
    assert fence.epoch >= 1


async def test_prefetched_cursor_and_events_watch(scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("a", []), ("b", []), ("c", []))
    coord = await leader(scripts, keys, strategy="round_robin", batch_size=1)
    store = TaskStore(scripts, keys)
    await store.submit([(task_spec(NOOP, id=f"t{i}"), None) for i in range(4)])
    for _ in range(4):
        assert await coord.dispatch_once() == 1
    swarms = [t and t.swarm for t in await store.get_many([f"t{i}" for i in range(4)])]
    assert swarms == ["a", "b", "c", "a"]  # the cursor read (prefetched) and advanced each call
    pubsub = scripts.client.pubsub()
    await pubsub.subscribe(keys.ch_events)
    confirmed = await pubsub.get_message(timeout=10)  # subscribed before anything publishes
    assert confirmed is not None and confirmed["type"] == "subscribe"
    await scripts.client.set(keys.events_watch, b"1", px=60_000)
    (c,) = await store.claim("a", "w1", 1)
    assert await store.finish("w1", [Outcome(c.id, c.token, "ok", b"\xc0")]) == ["completed"]
    seen: list[bytes] = []
    while len(seen) < 2:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
        assert msg is not None
        seen.append(msg["data"])
    assert b"task.started" in seen[0] and b"task.completed" in seen[1]
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_held_swarm_is_picked_up_after_idle_dispatches(
    scripts: Scripts, keys: Keys
) -> None:
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", []))
    await host(scripts, keys, "w2", ("b", []))
    await scripts.client.zadd(keys.heartbeats, {"w2": 0})  # w2's last beat is long past
    coord = SwarmCoordinator(scripts, keys, heartbeat_timeout_ms=60_000)
    assert await coord.election.try_acquire()
    await store.submit([(task_spec(NOOP, id=f"t{i}"), None) for i in range(4)])
    assert await coord.dispatch_once() == 4  # b held for want of a live host: all to a
    assert await registry.heartbeat("w2", {}, 0.5)
    for _ in range(3):  # idle: nothing ready, these calls do not look at held swarms
        assert await coord.dispatch_once() == 0
    more = [f"m{i}" for i in range(4)]
    await store.submit([(task_spec(NOOP, id=t), None) for t in more])
    await coord.dispatch_once()  # looks at the held swarm first: b is open, and least loaded
    got = await store.get_many(more)
    assert {t.swarm for t in got if isinstance(t, Task)} == {"b"}


def test_prefetch_header_lines() -> None:
    body = "-- prefetch: KEYS[12] KEYS[15]\n-- prefetch: KEYS[12]\nreturn 1\n"
    assert prefetch_keys("x", body) == [12, 15]
    assert prefetch_arg("x", body) == "{KEYS[12], KEYS[15]}"
    assert prefetch_arg("x", "return 1") == "nil"
    with pytest.raises(errors.ConfigError):
        prefetch_keys("x", "-- prefetch: ARGV[1]\n")


def test_claim_keys_match_the_lua_prelude() -> None:
    """claim_tasks' keys (ops.tasks.CLAIM_KEYS) are the names load_claim_keys gives KEYS[i]."""
    lua = (lua_dir() / "lib" / "02_tasks.lua").read_text()
    body = lua[lua.index("local function load_claim_keys()") :].split("\nend\n", 1)[0]
    head = body.split("TK.result", 1)[0]
    names = [n.removeprefix("TK.") for n in re.findall(r"TK\.\w+", head)]
    numbers = [int(i) for i in re.findall(r"KEYS\[(\d+)\]", head)]
    assert numbers == list(range(1, 9)) and tuple(names) == ops_tasks.CLAIM_KEYS
    keys = Keys("n")
    tk = keys.task_keys
    assert ops_tasks.claim_keyset(keys) == [getattr(tk, f) for f in ops_tasks.CLAIM_KEYS]
