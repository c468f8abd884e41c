"""Decision 67: a request-id record replays its outcome without running the body again, and the
records the library memoizes between calls are read afresh each call: a change of the record
changes the outcome at once."""

from __future__ import annotations

import redis.asyncio as aioredis

from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry
from multiswarm.script_library import _parts
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"

# KEYS[1]: a counter the body bumps (so a replay that ran the body shows); KEYS[2]: request key
BODY = """
return with_request_id(function()
  local n = redis.call('INCR', KEYS[1])
  return {n, 'a', {'b', 'c'}, {}, 1234567890123}
end, false)
"""


async def run_with_request_id(r: aioredis.Redis, counter: str, req: str) -> object:
    reply: object = await r.eval(_parts()[0] + BODY, 2, counter, req)
    return reply


async def test_request_record_replays_without_running_again(
    redis_server: RedisServer, namespace: str
) -> None:
    r = aioredis.Redis.from_url(redis_server.url)
    counter, req = f"{{{namespace}}}:n", f"{{{namespace}}}:req:1"
    try:
        first = await run_with_request_id(r, counter, req)
        assert first == [1, b"a", [b"b", b"c"], [], 1234567890123]
        raw = await r.get(req)
        assert isinstance(raw, bytes) and raw.startswith(b"\x81\xa1v")  # MessagePack {v = ...}
        assert await run_with_request_id(r, counter, req) == first
        assert await r.get(counter) == b"1"
    finally:  # closed on a failure too: left to the collector, it warns inside a later test
        await r.aclose()


async def test_a_json_record_of_an_earlier_version_replays_as_recorded(
    redis_server: RedisServer, namespace: str
) -> None:
    r = aioredis.Redis.from_url(redis_server.url)
    counter, req = f"{{{namespace}}}:n", f"{{{namespace}}}:req:1"
    try:
        await r.set(req, '{"v":[7,"b",["x"]]}', px=60_000)
        assert await run_with_request_id(r, counter, req) == [7, b"b", [b"x"]]
        assert await r.get(counter) is None  # the body did not run
    finally:
        await r.aclose()


async def test_claim_follows_each_change_of_the_swarm_record(scripts: Scripts, keys: Keys) -> None:
    store, registry = TaskStore(scripts, keys), SwarmRegistry(scripts, keys)
    await host(scripts, keys, "w1", ("s", ["x"]))
    await host(scripts, keys, "w2", ("o", []))
    coord = await leader(scripts, keys)
    await store.submit([(task_spec(NOOP, id=f"t{i}", capabilities=["x"]), None) for i in range(3)])
    assert await coord.dispatch_once() == 3
    assert await store.claim("s", "w2", 1) == []  # not a host of s
    (first,) = await store.claim("s", "w1", 1)
    assert first.id == "t0"
    assert await registry.set_paused("s", True)
    assert await store.claim("s", "w1", 1) == []  # the record changed: paused
    assert await registry.set_paused("s", False)
    (second,) = await store.claim("s", "w1", 1)
    assert second.id == "t1"
    await host(scripts, keys, "w2", ("o", []), ("s", ["x"]))  # w2 hosts s too now
    (third,) = await store.claim("s", "w2", 1)
    assert third.id == "t2"
