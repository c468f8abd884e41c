"""Task records are MessagePack maps (decision 64) written sparse (fields at their default
left out, decision 57); records written as JSON by earlier versions, in full or sparse, still
go through the whole lifecycle and are written as MessagePack at their next change."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from multiswarm.errors import BadRequest
from multiswarm.keys import Keys
from multiswarm.messages import MAX_SETTING, Task, TaskSpec
from multiswarm.ops.tasks import Outcome
from multiswarm.script_library import lua_dir
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"


def _lua_defaults() -> dict[str, object]:
    text = (lua_dir() / "lib" / "02_tasks.lua").read_text()
    body = re.search(r"local TASK_DEFAULTS = \{(.*?)\n\}", text, re.S)
    assert body is not None
    out: dict[str, object] = {}
    for name, value in re.findall(r"(\w+) = ('[^']*'|\d+)", body.group(1)):
        out[name] = value.strip("'") if value.startswith("'") else int(value)
    return out


def test_lua_defaults_are_the_python_task_defaults() -> None:
    """A field left out of a record reads as the same value in Lua and in Python."""
    lua = _lua_defaults()
    fields = {f.name: f.default for f in msgspec.structs.fields(Task)}
    assert lua and all(fields[name] == value for name, value in lua.items())
    assert all(v in (0, "") for v in lua.values())  # nothing rests on a non-zero default
    text = (lua_dir() / "lib" / "02_tasks.lua").read_text()
    listed = re.search(r"local DEFAULT_FIELDS = \{(.*?)\}", text, re.S)
    assert listed is not None
    assert sorted(re.findall(r"'(\w+)'", listed.group(1))) == sorted(lua)


@pytest.fixture
async def world(scripts: Scripts, keys: Keys):  # type: ignore[no-untyped-def]
    await host(scripts, keys, "w1", ("s", []))
    return TaskStore(scripts, keys), await leader(scripts, keys)


async def _stored(store: TaskStore, keys: Keys, tid: str) -> bytes:
    raw = await store.client.hget(keys.tasks, tid)
    assert isinstance(raw, bytes)
    return raw


async def _raw(store: TaskStore, keys: Keys, tid: str) -> dict[str, Any]:
    """The stored record's fields, in whichever format it is stored."""
    raw = await _stored(store, keys, tid)
    value: dict[str, Any] = json.loads(raw) if raw[:1] == b"{" else msgspec.msgpack.decode(raw)
    return value


async def _put_raw(store: TaskStore, keys: Keys, tid: str, fields: dict[str, Any]) -> None:
    """Store ``fields`` as the record, in the format the current one is in."""
    raw = await _stored(store, keys, tid)
    encode = json.dumps if raw[:1] == b"{" else msgspec.msgpack.encode
    await store.client.hset(keys.tasks, tid, encode(fields))


def _is_msgpack_map(raw: bytes) -> bool:
    return 0x80 <= raw[0] <= 0x8F or raw[0] == 0xDE


async def _write_full(store: TaskStore, keys: Keys, tid: str) -> None:
    """Rewrite a record the way versions before decision 57 stored it: JSON, every field,
    defaults included."""
    task = await store.get(tid)
    await store.client.hset(keys.tasks, tid, msgspec.json.encode(task))


async def _write_sparse_json(store: TaskStore, keys: Keys, tid: str) -> None:
    """Rewrite a record the way versions from decision 57 to 64 stored it: JSON, sparse."""
    await store.client.hset(keys.tasks, tid, json.dumps(await _raw(store, keys, tid)))


async def test_records_leave_defaults_out_and_read_them_back(world, keys: Keys) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit([(task_spec(NOOP, id="a"), 1)])
    assert _is_msgpack_map(await _stored(store, keys, "a"))
    raw = await _raw(store, keys, "a")
    assert raw["status"] == "ready" and "reason" not in raw and "attempts" not in raw
    # the metatable's defaults stay out: only the fields the record holds are packed
    assert set(raw) == {
        "id", "handler", "status", "prio", "max_attempts", "lease_ms", "timeout_ms",
        "backoff_ms", "backoff_max_ms", "seq", "created_ms", "updated_ms",
    }  # fmt: skip
    # every number is a MessagePack integer (13-digit time stamps included), none a float
    assert all(type(v) is int for k, v in raw.items() if k not in ("id", "handler", "status"))
    assert raw["created_ms"] > 1_600_000_000_000 and raw["prio"] == 1
    assert await coord.dispatch_once() == 1
    (c,) = await store.claim("s", "w1", 1)
    raw = await _raw(store, keys, "a")
    assert raw["worker"] == "w1" and raw["attempts"] == 1 and "assigned_ms" not in raw
    assert await store.finish("w1", [Outcome(c.id, c.token, "ok", b"\xc0")]) == ["completed"]
    t = await store.get("a")
    assert (t.status, t.worker, t.token, t.completed_by) == ("completed", "w1", c.token, c.token)
    assert (t.reason, t.error, t.lease_until, t.due_ms, t.deps_left) == ("", "", 0, 0, 0)
    assert t.started_ms > 0 and t.finished_ms >= t.started_ms


async def test_records_written_in_full_go_through_the_lifecycle(world, keys: Keys) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    spec = task_spec(NOOP, id="old", max_attempts=2)
    await store.submit([(spec, 1), (task_spec(NOOP, id="kid", depends_on=["old"]), 2)])
    for tid in ("old", "kid"):
        await _write_full(store, keys, tid)
    assert "reason" in await _raw(store, keys, "old")  # the full layout
    assert await coord.dispatch_once() == 1
    await _write_full(store, keys, "old")
    (c,) = await store.claim("s", "w1", 1)
    assert c.id == "old" and c.attempts == 1
    await _write_full(store, keys, "old")
    assert await store.fail(c.id, c.token, "boom") == "retry"
    t = await store.get("old")
    assert (t.status, t.error, t.worker, t.token, t.attempts) == ("failed", "boom", "", "", 1)
    assert t.due_ms > 0 and t.reason.startswith("retry in")
    assert _is_msgpack_map(await _stored(store, keys, "old"))  # rewritten as MessagePack
    raw = await _raw(store, keys, "old")
    assert "worker" not in raw and raw["error"] == "boom"  # and sparse
    # due at once: make it so, then run it to completion; its dependent becomes ready
    await store.client.zadd(keys.task_keys.delayed, {"old": 0})
    await _write_full(store, keys, "old")
    assert await coord.dispatch_once() == 1
    (c,) = await store.claim("s", "w1", 1)
    assert c.attempts == 2
    await _write_full(store, keys, "old")
    assert await store.complete(c.id, c.token, "w1", {"ok": 1}) == "completed"
    old, kid = await store.get_many(["old", "kid"])
    assert old is not None and kid is not None
    assert (old.status, old.error, old.completed_by) == ("completed", "", c.token)
    assert (kid.status, kid.deps_left, kid.deps) == ("ready", 0, "old")


async def _age(store: TaskStore, keys: Keys, tid: str, by_ms: int) -> int:
    """Move task ``tid``'s last update and deadline ``by_ms`` into the past; its old update."""
    raw = await _raw(store, keys, tid)
    updated = int(str(raw["updated_ms"]))
    raw["updated_ms"] = updated - by_ms
    await _put_raw(store, keys, tid, raw)
    await store.client.zadd(keys.leases, {tid: 1})
    return updated - by_ms


async def test_an_assignment_keeps_its_time_across_deadline_extensions(world, keys: Keys) -> None:  # type: ignore[no-untyped-def]
    """Dispatch leaves assigned_ms out (it is updated_ms then); reap_leases keeps it when it
    extends the deadline of a task its live swarm has not claimed yet, so the task still goes
    back to ready once it waited a full run (timeout + lease + deadline) unclaimed."""
    store, coord = world
    await store.submit([(task_spec(NOOP, id="a", timeout_ms=1_000, lease_ms=1_000), 1)])
    assert await coord.dispatch_once() == 1
    assert "assigned_ms" not in await _raw(store, keys, "a")
    assigned = await _age(store, keys, "a", 500)
    await coord.reap_once()
    raw = await _raw(store, keys, "a")
    assert (raw["status"], raw["assigned_ms"]) == ("assigned", assigned)
    assert int(str(raw["updated_ms"])) > assigned
    # the extension's rewrite did not restart the wait: aged past a full run, it is requeued
    raw["assigned_ms"] = assigned - 10 * 60_000
    await _put_raw(store, keys, "a", raw)
    await store.client.zadd(keys.leases, {"a": 1})
    await coord.reap_once()
    t = await store.get("a")
    assert t.status == "ready" and t.reason.startswith("unclaimed by swarm s")


async def test_sparse_json_records_read_in_lua_and_python_and_are_rewritten(  # type: ignore[no-untyped-def]
    world, keys: Keys
) -> None:
    """Records of the versions between decisions 57 and 64 (sparse JSON, non-ASCII text
    included) read the same in Python and in every script, and leave at their next change
    as MessagePack with the same fields."""
    store, coord = world
    await store.submit(
        [
            (task_spec(NOOP, id="j", name="naïve ✓", max_attempts=3), 1),
            (task_spec(NOOP, id="k", depends_on=["j"]), 2),
            (task_spec(NOOP, id="x"), 3),
        ]
    )
    for tid in ("j", "k", "x"):
        before = await store.get(tid)
        await _write_sparse_json(store, keys, tid)
        assert (await _stored(store, keys, tid))[:1] == b"{"
        assert await store.get(tid) == before  # Python reads JSON as it read MessagePack
    # Lua reads the JSON: dispatch (ready), cancel, and the dependent's release
    assert await store.cancel("x") == "cancelled"
    assert _is_msgpack_map(await _stored(store, keys, "x"))
    assert await coord.dispatch_once() == 1
    j = await store.get("j")
    assert (j.status, j.swarm, j.name) == ("assigned", "s", "naïve ✓")
    assert _is_msgpack_map(await _stored(store, keys, "j"))
    await _write_sparse_json(store, keys, "j")
    (c,) = await store.claim("s", "w1", 1)
    await _write_sparse_json(store, keys, "j")
    assert await store.fail(c.id, c.token, "bad ✗ input") == "retry"
    raw = await _raw(store, keys, "j")
    assert (raw["error"], raw["attempts"], raw["name"]) == ("bad ✗ input", 1, "naïve ✓")
    await store.client.zadd(keys.task_keys.delayed, {"j": 0})
    await _write_sparse_json(store, keys, "j")
    assert await coord.dispatch_once() == 1
    (c,) = await store.claim("s", "w1", 1)
    await _write_sparse_json(store, keys, "j")
    assert await store.complete(c.id, c.token, "w1", 7) == "completed"
    assert await store.result("j") == 7
    j, k = await store.get_many(["j", "k"])
    assert j is not None and k is not None
    assert (j.status, j.attempts, j.completed_by, j.error) == ("completed", 2, c.token, "")
    assert (k.status, k.deps_left) == ("ready", 0)
    for tid in ("j", "k"):
        assert _is_msgpack_map(await _stored(store, keys, tid))


@pytest.mark.parametrize("layout", ["msgpack", "json"])
async def test_finished_records_of_either_format_are_pruned(  # type: ignore[no-untyped-def]
    world, keys: Keys, layout: str
) -> None:
    """prune_tasks reads the three fields it needs off a JSON record's text and decodes a
    MessagePack one: both are forgotten once due, and kept before."""
    store, _ = world
    await store.submit([(task_spec(NOOP, id=f"p{i}", result_ttl_ms=60_000), i) for i in range(2)])
    for i in range(2):
        assert await store.cancel(f"p{i}") == "cancelled"
        if layout == "json":
            await _write_sparse_json(store, keys, f"p{i}")
    raw = await _raw(store, keys, "p0")
    raw["updated_ms"] -= 120_000  # past its TTL by its record; p1 is not
    await _put_raw(store, keys, "p0", raw)
    # both reach the sweep (their index entries aged): the record decides
    await store.client.zadd(keys.task_status("cancelled"), {"p0": 1, "p1": 1})
    assert await store.prune(3_600_000) == 1
    assert await store.client.hexists(keys.tasks, "p0") == 0
    assert (await store.get("p1")).status == "cancelled"
    assert await store.client.zscore(keys.task_retained, "p1") is not None


async def test_numbers_round_trip_exactly_and_oversized_settings_are_refused(  # type: ignore[no-untyped-def]
    world, keys: Keys
) -> None:
    """The largest settings allowed keep every sum the scripts store exact (below 2**53) and
    an int in Python; larger ones, or fractions, are refused by task_spec and, for a TaskSpec
    built directly, by TaskStore.submit."""
    store, coord = world
    big = task_spec(NOOP, id="big", lease_ms=MAX_SETTING, timeout_ms=MAX_SETTING)
    await store.submit([(big, 1)])
    assert await coord.dispatch_once() == 1
    assert len(await store.claim("s", "w1", 1)) == 1
    t = await store.get("big")
    assert (t.lease_ms, t.timeout_ms) == (MAX_SETTING, MAX_SETTING)
    assert t.lease_until == t.started_ms + MAX_SETTING < 2**53
    raw = await _raw(store, keys, "big")
    assert type(raw["lease_until"]) is int and raw["lease_until"] == t.lease_until
    with pytest.raises(BadRequest, match="timeout_ms"):
        task_spec(NOOP, timeout_ms=MAX_SETTING + 1)
    with pytest.raises(BadRequest, match="lease_ms"):
        task_spec(NOOP, lease_ms=1.5e6)  # type: ignore[arg-type]
    for field, value in (("timeout_ms", 2**60), ("lease_ms", 1500.5), ("max_attempts", -1)):
        spec = msgspec.structs.replace(TaskSpec(id="odd", handler=NOOP), **{field: value})
        with pytest.raises(BadRequest, match=field):
            await store.submit([(spec, 1)])
    assert await store.client.hexists(keys.tasks, "odd") == 0
