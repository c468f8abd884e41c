"""Task records are written sparse (fields at their default left out, decision 57) and records
written in full by earlier versions still go through the whole lifecycle."""

from __future__ import annotations

import json
import re

import msgspec
import pytest

from multiswarm.keys import Keys
from multiswarm.messages import Task
from multiswarm.ops.tasks import Outcome
from multiswarm.scripts import Scripts, lua_dir
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


async def _raw(store: TaskStore, keys: Keys, tid: str) -> dict[str, object]:
    raw = await store.client.hget(keys.tasks, tid)
    assert raw is not None
    value: dict[str, object] = json.loads(raw)
    return value


async def _write_full(store: TaskStore, keys: Keys, tid: str) -> None:
    """Rewrite a record the way earlier versions stored it: every field, defaults included."""
    task = await store.get(tid)
    await store.client.hset(keys.tasks, tid, msgspec.json.encode(task))


async def test_records_leave_defaults_out_and_read_them_back(world, keys: Keys) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit([(task_spec(NOOP, id="a"), 1)])
    raw = await _raw(store, keys, "a")
    assert raw["status"] == "ready" and "reason" not in raw and "attempts" not in raw
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
    raw = await _raw(store, keys, "old")
    assert "worker" not in raw and raw["error"] == "boom"  # rewritten sparse
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
    await store.client.hset(keys.tasks, tid, json.dumps(raw))
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
    await store.client.hset(keys.tasks, "a", json.dumps(raw))
    await store.client.zadd(keys.leases, {"a": 1})
    await coord.reap_once()
    t = await store.get("a")
    assert t.status == "ready" and t.reason.startswith("unclaimed by swarm s")
