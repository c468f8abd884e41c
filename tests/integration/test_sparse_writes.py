"""Dispatch, claim and finish write a record decoded from MessagePack without the loop that
drops default fields (pack_sparse, decision 75): they set nil where they used to set a default.
Their records must still hold no field at its default, after a reason, an error and a retry
(fields that held values and went back to their default in these calls)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from multiswarm.keys import Keys
from multiswarm.messages import Task
from multiswarm.ops.tasks import Outcome
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader
from .test_task_record_layout import _lua_defaults

NOOP = "multiswarm.demo_tasks:noop"


async def _defaults_held(store: TaskStore, keys: Keys, tid: str) -> dict[str, Any]:
    raw = await store.client.hget(keys.tasks, tid)
    assert isinstance(raw, bytes) and raw[:1] != b"{"
    fields: dict[str, Any] = msgspec.msgpack.decode(raw)
    defaults = _lua_defaults()
    return {k: v for k, v in fields.items() if k in defaults and defaults[k] == v}


async def test_lifecycle_writes_leave_every_default_out(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    coord = await leader(scripts, keys)
    # no swarm has capability x yet: the task is parked with a reason
    await store.submit([(task_spec(NOOP, id="a", capabilities=["x"], backoff_ms=1), None)])
    assert await coord.dispatch_once() == 0
    parked = await store.get("a")
    assert isinstance(parked, Task) and parked.reason != ""
    await host(scripts, keys, "w1", ("s", ["x"]))
    assert await coord.dispatch_once() == 1  # the reason goes back to ''
    assert await _defaults_held(store, keys, "a") == {}
    (c,) = await store.claim("s", "w1", 1)
    assert await _defaults_held(store, keys, "a") == {}
    assert await store.finish("w1", [Outcome(c.id, c.token, "error", b"boom")]) == ["retry"]
    failed = await store.get("a")
    assert isinstance(failed, Task) and failed.error == "boom" and failed.reason != ""
    # the retry is due after 1 ms of backoff: dispatch promotes it and assigns it again
    for _ in range(100):
        if await coord.dispatch_once():
            break
        await asyncio.sleep(0.01)
    assert await _defaults_held(store, keys, "a") == {}
    (c,) = await store.claim("s", "w1", 1)
    assert await _defaults_held(store, keys, "a") == {}
    assert await store.finish("w1", [Outcome(c.id, c.token, "ok", b"\xc0")]) == ["completed"]
    assert await _defaults_held(store, keys, "a") == {}
    done = await store.get("a")
    assert isinstance(done, Task)
    assert (done.status, done.reason, done.error, done.lease_until) == ("completed", "", "", 0)
    assert (done.attempts, done.completed_by, done.worker) == (2, c.token, "w1")


async def test_a_claim_lists_each_tasks_dependencies(scripts: Scripts, keys: Keys) -> None:
    """Tasks without dependencies share one empty list in claim's reply (decision 75); one
    with dependencies lists them, in the same claim."""
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("s", []))
    coord = await leader(scripts, keys)
    await store.submit([(task_spec(NOOP, id=p), None) for p in ("p1", "p2")])
    assert await coord.dispatch_once() == 2
    for c in await store.claim("s", "w1", 2):
        assert c.deps == []
        assert await store.complete(c.id, c.token, "w1", None) == "completed"
    specs = [task_spec(NOOP, id="kid", depends_on=["p1", "p2"]), task_spec(NOOP, id="solo")]
    await store.submit([(s, None) for s in specs])
    assert await coord.dispatch_once() == 2
    got = {c.id: c.deps for c in await store.claim("s", "w1", 5)}
    assert got == {"kid": ["p1", "p2"], "solo": []}
