"""The task spec submit_tasks.lua reads (decision 84): MessagePack from this client, whose pairs
become the new record's; JSON from an older client, still accepted and stored the same; a
MessagePack spec that is not one (truncated, trailing bytes, an unknown, repeated or missing
field, not a map) refused BAD_REQUEST with nothing written."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from multiswarm.errors import BadRequest
from multiswarm.keys import Keys
from multiswarm.messages import TaskSpec, decode_task, encode_json, encode_task_spec, pack
from multiswarm.ops.tasks import submit_tasks
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

NOOP = "multiswarm.demo_tasks:noop"
#: fields submit sets, not the spec
PER_CALL = ("id", "seq", "created_ms", "updated_ms")


def _full(tid: str, deps: tuple[str, ...] = ()) -> TaskSpec:
    """A spec with every optional field set (a 12-entry map)."""
    return task_spec(
        NOOP,
        id=tid,
        name="named",
        capabilities=["gpu", "ssd"],
        priority="high",
        depends_on=deps,
        max_attempts=5,
        lease_ms=45_000,
        backoff_ms=0,
        result_ttl_ms=3_600_000,
    )


async def _raw(scripts: Scripts, keys: Keys, tid: str) -> bytes:
    raw = await scripts.client.hget(keys.tasks, tid)
    assert isinstance(raw, bytes)
    return raw


async def _records(scripts: Scripts, keys: Keys, ids: list[str]) -> list[dict[str, Any]]:
    return [msgspec.msgpack.decode(await _raw(scripts, keys, i)) for i in ids]


async def test_a_json_spec_from_an_older_client_is_stored_as_a_messagepack_one(
    scripts: Scripts, keys: Keys
) -> None:
    # the two encodings of the same definition, JSON as an older client sent it (every field)
    old, new = _full("old"), _full("new")
    assert encode_json(old)[:1] == b"{"
    assert encode_task_spec(new)[:1] == b"\x8b"  # a fixmap of 11 (no deps)
    assert encode_task_spec(task_spec(NOOP, id="x"))[:1] == b"\x88"  # defaults left out
    out, _ = await submit_tasks(
        scripts, keys, [(encode_json(old), pack(1)), (encode_task_spec(new), pack(2))]
    )
    assert out == ["ready", "ready"]
    rec_old, rec_new = await _records(scripts, keys, ["old", "new"])
    assert rec_old["seq"] + 1 == rec_new["seq"]
    assert {k: v for k, v in rec_old.items() if k not in PER_CALL} == {
        k: v for k, v in rec_new.items() if k not in PER_CALL
    }
    # sparse and integral (decisions 57, 64): backoff_ms 0 is a setting, kept
    assert not [k for k, v in rec_new.items() if v in ("", 0) and k not in ("prio", "backoff_ms")]
    assert all(type(v) in (int, str) for v in rec_new.values())
    # dependants of both, each as its client sends it: pending (deps_left: a 17-entry map16
    # record), then a resubmission of the JSON one is the same definition
    dep_old, dep_new = _full("dep_old", ("old", "new")), _full("dep_new", ("old", "new"))
    out, _ = await submit_tasks(
        scripts,
        keys,
        [
            (encode_json(dep_old), pack(3)),
            (encode_task_spec(dep_new), pack(4)),
            (encode_json(old), pack(1)),
        ],
    )
    assert out == ["pending", "pending", "exists"]
    assert (await _raw(scripts, keys, "dep_new"))[:1] == b"\xde"  # a map 16 of 17 entries
    for tid in ("dep_old", "dep_new"):
        task = decode_task(await _raw(scripts, keys, tid))
        assert (task.status, task.deps_left, task.deps) == ("pending", 2, "old,new")
        assert (task.name, task.caps, task.prio, task.result_ttl_ms) == (
            "named",
            "gpu,ssd",
            0,
            3_600_000,
        )
    tk = keys.task_keys
    edges = [f"{d}|{t}".encode() for d in ("new", "old") for t in ("dep_new", "dep_old")]
    assert await scripts.client.zrange(tk.waiting, 0, -1) == edges
    assert await scripts.client.zrange(tk.readers, 0, -1) == edges
    pending = await scripts.client.zrange(keys.task_status("pending"), 0, -1)
    assert sorted(pending) == [b"dep_new", b"dep_old"]
    assert await scripts.client.hget(keys.stats, "min_result_ttl_ms") == b"3600000"


@pytest.mark.parametrize("wire", ["json", "msgpack"])
async def test_a_spec_without_its_settings_is_refused(
    scripts: Scripts, keys: Keys, wire: str
) -> None:
    """A pending task stored without its priority failed the script that released it, and every
    dispatch after (the release stays queued): the whole partition stopped (found in review)."""
    store = TaskStore(scripts, keys)
    await store.submit([(task_spec(NOOP, id="d"), 1)])
    fields = {
        "id": "t",
        "handler": NOOP,
        "deps": "d",
        "max_attempts": 3,
        "lease_ms": 30_000,
        "timeout_ms": 1000,
        "backoff_ms": 100,
        "backoff_max_ms": 100,
    }
    for spec in (fields, {**fields, "prio": "high"}):
        raw = json.dumps(spec).encode() if wire == "json" else msgspec.msgpack.encode(spec)
        with pytest.raises(BadRequest):
            await submit_tasks(scripts, keys, [(raw, pack(1))])
    assert await store.get_many(["t"]) == [None]


async def test_a_dependant_of_a_cancelled_task_is_cancelled_at_submit(
    scripts: Scripts, keys: Keys
) -> None:
    store = TaskStore(scripts, keys)
    await store.submit([(task_spec(NOOP, id="a"), 1), (task_spec(NOOP, id="b"), 1)])
    await store.cancel("a")
    out = await store.submit(
        [
            (task_spec(NOOP, id="c", depends_on=["a"]), 1),
            (task_spec(NOOP, id="d", depends_on=["b"]), 1),
        ]
    )
    assert out == {"c": "cancelled", "d": "pending"}
    c = await store.get("c")
    assert (c.status, c.reason, c.deps_left) == ("cancelled", "dependency a cancelled", 0)
    cancelled = await scripts.client.zrange(keys.task_status("cancelled"), 0, -1)
    assert sorted(cancelled) == [b"a", b"c"]
    assert (await store.stats())["cancelled"] == 2
    # c reads no result (it never runs): no readers or waiting edge of its own
    assert await scripts.client.zrange(keys.task_keys.readers, 0, -1) == [b"b|d"]


async def test_submit_events_carry_each_new_task_s_status_and_reason(
    scripts: Scripts, keys: Keys
) -> None:
    """Events are published only while the events watch key lives (decision 37); submit reads
    it once per call (decision 84) and then publishes one per new task."""
    store, client = TaskStore(scripts, keys), scripts.client
    await store.submit([(task_spec(NOOP, id="a"), 1), (task_spec(NOOP, id="x"), 1)])
    await store.cancel("a")
    pubsub: Any = client.pubsub()
    await pubsub.subscribe(keys.ch_events)
    try:
        await client.set(keys.events_watch, b"1", px=10_000)
        await store.submit(
            [
                (task_spec(NOOP, id="b"), 1),
                (task_spec(NOOP, id="c", depends_on=["a"]), 1),
                (task_spec(NOOP, id="d", depends_on=["b"]), 1),
                (task_spec(NOOP, id="x"), 1),  # exists: no event
            ]
        )
        await client.publish(keys.ch_events, b"marker")  # nothing more came before it
        seen: list[tuple[str, str, str]] = []
        for _ in range(50):  # the subscription's confirmation reads as None
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if msg is None:
                continue
            if msg["data"] == b"marker":
                break
            payload = json.loads(msg["data"])["payload"]
            seen.append((payload["task"], payload["status"], payload.get("reason", "")))
        assert seen == [
            ("b", "ready", ""),
            ("c", "cancelled", "dependency a cancelled"),
            ("d", "pending", ""),
        ]
    finally:
        await pubsub.aclose()


def _pairs(*kv: Any) -> bytes:
    return b"".join(msgspec.msgpack.encode(x) for x in kv)


GOOD = encode_task_spec(task_spec(NOOP, id="bad"))  # 8 entries
BAD_SPECS = {
    "truncated": GOOD[:-2],
    "trailing bytes": GOOD + b"\x01",
    "unknown field": b"\x89" + GOOD[1:] + _pairs("status", "completed"),
    "repeated field": b"\x89" + GOOD[1:] + _pairs("id", "other"),
    "missing setting": msgspec.msgpack.encode(
        {k: v for k, v in msgspec.msgpack.decode(GOOD).items() if k != "lease_ms"}
    ),
    "an array": msgspec.msgpack.encode(["bad", NOOP]),
    "id not text": msgspec.msgpack.encode({**msgspec.msgpack.decode(GOOD), "id": 7}),
    "not a spec": b"\xc1",
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
async def test_a_malformed_spec_is_refused_and_writes_nothing(
    scripts: Scripts, keys: Keys, case: str
) -> None:
    ok = encode_task_spec(task_spec(NOOP, id="ok"))
    with pytest.raises(BadRequest, match=r"task #2 is not a task spec"):
        await submit_tasks(scripts, keys, [(ok, pack(1)), (BAD_SPECS[case], pack(2))])
    client = scripts.client
    assert await client.exists(keys.tasks, keys.payloads, keys.stats, keys.ready) == 0
    # the good spec alone goes through
    assert (await submit_tasks(scripts, keys, [(ok, pack(1))]))[0] == ["ready"]
