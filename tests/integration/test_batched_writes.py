"""Claim, dispatch and finish write a call's tasks in one command per key (decision 71): the
outcomes and the structures left are those of one write per task, also when one call names a
task twice or releases a dependent that the same call then names."""

from __future__ import annotations

import msgspec
import pytest

from multiswarm.errors import AlreadyExists, BadRequest
from multiswarm.keys import Keys
from multiswarm.ops.tasks import Outcome, finish_tasks, status_counts
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"


async def test_one_finish_call_names_tasks_twice_and_a_released_dependent(
    scripts: Scripts, keys: Keys
) -> None:
    await host(scripts, keys, "w1", ("s", []))
    store, coord = TaskStore(scripts, keys), await leader(scripts, keys)
    specs = [task_spec(NOOP, id=i, max_attempts=3) for i in ("a", "b", "d")]
    specs.append(task_spec(NOOP, id="c", depends_on=["a"]))
    await store.submit([(s, i) for i, s in enumerate(specs)])
    assert await coord.dispatch_once() == 3
    claimed = {c.id: c for c in await store.claim("s", "w1", 3)}
    assert sorted(claimed) == ["a", "b", "d"]
    # each row carries its own task's payload (read in one HMGET)
    payloads = await scripts.client.hmget(keys.task_keyset[1], ["a", "b", "d"])
    assert [claimed[i].payload for i in ("a", "b", "d")] == payloads
    ta, tb, td = claimed["a"].token, claimed["b"].token, claimed["d"].token
    out = await finish_tasks(
        scripts,
        keys,
        "w1",
        [
            Outcome("a", ta, "ok", b"ra"),
            Outcome("a", ta, "ok", b"ra2"),  # the same task again: a duplicate
            Outcome("b", tb, "error", "boom"),  # retried...
            Outcome("b", tb, "ok", b"rb"),  # ...then its result still wins
            Outcome("c", "1@w1", "ok", b"rc"),  # released by a's completion in this call
            Outcome("d", td, "ok", b"rd"),
            Outcome("zz", "1@w1", "ok", b""),
        ],
        seed=1,
    )
    assert out == [
        "completed",
        "duplicate",
        "retry",
        "completed",
        "completed",
        "completed",
        "not_found",
    ]
    c = scripts.client
    assert await c.zcard(keys.task_keyset[6]) == 0  # leases
    assert await c.zcard(keys.task_keyset[15]) == 0  # running by worker
    assert await c.zcard(keys.task_keyset[5]) == 0  # delayed
    assert await c.zcard(keys.task_keyset[4]) == 0  # ready
    completed = await c.zrange(keys.task_keyset[22], 0, -1)
    assert sorted(completed) == [b"a", b"b", b"c", b"d"]
    assert await c.zcard(keys.task_keyset[23]) == 0  # failed index
    assert await c.hmget(keys.task_keyset[2], ["a", "b", "c", "d"]) == [b"ra", b"rb", b"rc", b"rd"]
    tasks = {t.id: t for t in await store.get_many(["a", "b", "c", "d"]) if t}
    assert {i: t.status for i, t in tasks.items()} == dict.fromkeys("abcd", "completed")
    assert tasks["a"].completed_by == ta and tasks["a"].lease_until == 0
    counts = await status_counts(c, keys)
    assert counts["completed"] == 4 and counts["running"] == 0 and counts["assigned"] == 0


async def test_one_submit_call_checks_and_writes_its_batch_at_once(
    scripts: Scripts, keys: Keys
) -> None:
    """Submit reads the batch's records in one HMGET and writes its payloads in one HSET
    (decision 79): a duplicate or bad task anywhere in the batch still writes nothing, and a
    batch mixing a resubmitted task with new ones writes only the new ones' payloads."""
    store = TaskStore(scripts, keys)
    a, b = task_spec(NOOP, id="a"), task_spec(NOOP, id="b")
    with pytest.raises(AlreadyExists):
        await store.submit([(a, b"pa"), (b, b"pb"), (a, b"pa")])
    with pytest.raises(BadRequest):
        await store.submit([(a, b"pa"), (task_spec(NOOP, id="x", depends_on=["x"]), None)])
    assert await scripts.client.hmget(keys.task_keyset[1], ["a", "b"]) == [None, None]
    assert await store.submit([(a, b"pa")]) == {"a": "ready"}
    (stored_a,) = await scripts.client.hmget(keys.task_keyset[1], ["a"])
    c = task_spec(NOOP, id="c", depends_on=["a", "b"])
    assert await store.submit([(a, b"other"), (b, b"pb"), (c, b"pc")]) == {
        "a": "exists",
        "b": "ready",
        "c": "pending",
    }
    payloads = await scripts.client.hmget(keys.task_keyset[1], ["a", "b", "c"])
    assert payloads[0] == stored_a  # the resubmitted task's payload is not rewritten
    assert all(
        isinstance(p, bytes) and p.endswith(b"p" + i.encode()) for p, i in zip(payloads, "abc")
    )
    # the new records are built sparse: no field holds its default ('' or 0) at submit
    for raw in await scripts.client.hmget(keys.task_keyset[0], ["b", "c"]):
        assert isinstance(raw, bytes)
        record = msgspec.msgpack.decode(raw)
        assert record["status"] in ("ready", "pending")
        assert not [k for k, v in record.items() if v in ("", 0) and k != "prio"]
