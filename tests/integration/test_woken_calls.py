"""Script calls that wait in Redis for a wake-up (Scripts.call_when_woken, decision 94).

A claim (or a dispatch) is sent behind an ``XREAD BLOCK`` on the wake-up stream its scripts
write to, so Redis runs it as the assignment (or the submission) arrives. It must run once
however the wait ends: woken, timed out, its reply lost, or the server refusing ``XREAD``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions

from multiswarm import tasks as tasks_module
from multiswarm.api import Multiswarm
from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer
from multiswarm.registry import swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.faults.inprocess import worker_system

from .helpers import eventually, host, leader

NOOP = "multiswarm.demo_tasks:noop"


async def _last_entry(client: Client, stream: str) -> str:
    """The id of the last entry of ``stream`` ("0-0" when it has none)."""
    got: Any = await client.xrevrange(stream, "+", "-", count=1)
    return str(got[0][0].decode()) if got else "0-0"


async def _blocked_in_xread(client: Client, stream: str) -> None:
    """Until a connection of the server is blocked in an XREAD (as a waiting call's is)."""

    async def blocked() -> bool:
        clients: Any = await client.client_list()
        return any(c["cmd"] == "xread" and "b" in c["flags"] for c in clients)

    await eventually(blocked, timeout_s=10, what=f"a client blocked in XREAD on {stream}")


async def _swarm_a(scripts: Scripts, keys: Keys, *tasks: str) -> tuple[TaskStore, SwarmCoordinator]:
    """A store, a leader and swarm ``a`` hosted by ``w1``; ``tasks`` submitted and assigned."""
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", []))
    coord = await leader(scripts, keys)
    if tasks:
        await store.submit([(task_spec(NOOP, id=t), None) for t in tasks])
        assert await coord.dispatch_once() == len(tasks)
    return store, coord


async def test_a_waiting_claim_runs_as_the_assignment_wakes_it(
    scripts: Scripts, keys: Keys, client: Client
) -> None:
    store, coord = await _swarm_a(scripts, keys)
    cursor = await _last_entry(client, keys.wake_swarm("a"))
    waiting = asyncio.ensure_future(store.claim_when_woken("a", "w1", 4, cursor, 20_000))
    # nothing assigned: the claim waits in Redis, its FCALL queued behind a blocked XREAD
    await _blocked_in_xread(client, keys.wake_swarm("a"))
    assert not waiting.done() and await client.zcard(keys.queue("a")) == 0
    await store.submit([(task_spec(NOOP, id="t1"), None)])
    assert await coord.dispatch_once() == 1
    # the assignment's wake-up runs the claim long before its 20 s wait would end
    woken, claimed = await asyncio.wait_for(waiting, 10)
    assert [c.id for c in claimed] == ["t1"]
    assert woken is not None and woken == await _last_entry(client, keys.wake_swarm("a"))
    task = await store.get("t1")
    assert (task.status, task.token, task.attempts) == ("running", claimed[0].token, 1)


async def test_a_waiting_claim_whose_wait_ends_claims_all_the_same(
    scripts: Scripts, keys: Keys, client: Client
) -> None:
    store, _ = await _swarm_a(scripts, keys, "t1")
    # the wake-up came before the wait: from its entry on, nothing new (a lost PUBLISH's case)
    cursor = await _last_entry(client, keys.wake_swarm("a"))
    woken, claimed = await store.claim_when_woken("a", "w1", 4, cursor, 100)
    assert woken is None  # the wait's safety net ended it
    assert [c.id for c in claimed] == ["t1"]


async def test_a_woken_claim_whose_reply_is_lost_replays_it_once(
    scripts: Scripts, keys: Keys, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = await _swarm_a(scripts, keys, "t0", "t1", "t2")
    direct: Any = scripts._direct
    sent = direct.call_many

    async def reply_lost(*commands: tuple[Any, ...], raise_on_error: bool = True) -> list[Any]:
        await sent(*commands, raise_on_error=raise_on_error)  # it ran in Redis
        raise redis.exceptions.ConnectionError("connection lost before the reply")

    monkeypatch.setattr(direct, "call_many", reply_lost)
    woken, claimed = await store.claim_when_woken("a", "w1", 2, "0-0", 100)
    monkeypatch.undo()
    # the retry under the same request key handed over what the lost call claimed, no more;
    # the next wait reads the stream from its start (the server may have lost it)
    assert woken == "0-0" and len(claimed) == 2
    for c in claimed:
        task = await store.get(c.id)
        assert (task.status, task.token, task.attempts) == ("running", c.token, 1)
    rest = await store.claim("a", "w1", 5)
    assert len(rest) == 1 and rest[0].id not in {c.id for c in claimed}


async def test_a_waiting_dispatch_runs_as_a_submission_wakes_it(
    scripts: Scripts, keys: Keys
) -> None:
    store, coord = await _swarm_a(scripts, keys)
    assert coord.can_dispatch_when_woken
    await coord.dispatch_when_woken(100)  # reads up to the stream's end (the hosting woke it)
    waiting = asyncio.ensure_future(coord.dispatch_when_woken(20_000))
    await _blocked_in_xread(scripts.client, keys.wake_leader)
    assert not waiting.done()
    await store.submit([(task_spec(NOOP, id="t1"), None)])
    assert await asyncio.wait_for(waiting, 10) == (True, 1)
    assert (await store.get("t1")).status == "assigned"


async def _without_xread(server: RedisServer, namespace: str) -> Settings:
    """Settings of a user of ``server`` that may run every command but ``XREAD``."""
    admin = connect(Settings(redis_url=server.url, redis_url_explicit=True))
    try:
        await admin.acl_setuser(
            "noxread",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-xread"],
        )
    finally:
        await admin.aclose()
    url = server.url.replace("redis://", "redis://noxread:pw@")
    return Settings(redis_url=url, redis_url_explicit=True, namespace=namespace)


async def test_a_server_refusing_xread_still_runs_the_call_and_it_is_not_asked_again(
    own_redis: RedisServer, namespace: str
) -> None:
    client = connect(await _without_xread(own_redis, namespace))
    try:
        scripts, keys = Scripts(client), Keys(namespace)
        await scripts.load()
        store, coord = await _swarm_a(scripts, keys, "t1")
        assert store.can_claim_when_woken
        woken, claimed = await store.claim_when_woken("a", "w1", 4, "0-0", 20_000)
        assert woken is None and [c.id for c in claimed] == ["t1"]
        # from now on the worker and the leader are woken by PUBLISH instead
        assert not store.can_claim_when_woken and not coord.can_dispatch_when_woken
    finally:
        await client.aclose()


async def test_a_system_whose_server_refuses_xread_is_woken_by_publish(
    own_redis: RedisServer, namespace: str, tmp_path: Path
) -> None:
    settings = await _without_xread(own_redis, namespace)
    async with worker_system(settings, [swarm_spec("s", [], agents=2)], tmp_path) as system:
        ids = [f"t{i}" for i in range(6)]
        await system.store.submit([(task_spec(NOOP, id=t), None) for t in ids])

        async def all_completed() -> bool:
            return all(
                t is not None and t.status == "completed" for t in await system.store.get_many(ids)
            )

        await eventually(all_completed, timeout_s=60, what="every task completed")
        # the worker's first claim that waited for a wake-up was refused its XREAD: it ran
        # all the same, and the worker subscribed to the assignments' PUBLISH instead
        assert system.worker._subscribed
        assert not system.worker.tasks.can_claim_when_woken


def _count_steps(ms: Multiswarm) -> list[Any]:
    """The cursor of each step its waiters take from now on (``TaskStore.wait_step``)."""
    steps: list[Any] = []
    step = ms.tasks.wait_step

    async def counted(task_id: str, cursor: Any, block_ms: int) -> Any:
        steps.append(cursor)
        return await step(task_id, cursor, block_ms)

    ms.tasks.wait_step = counted  # type: ignore[method-assign]
    return steps


async def test_a_waiter_reads_completions_from_where_they_stood_at_its_submission(
    settings: Settings, client: Client, scripts: Scripts, keys: Keys
) -> None:
    ms = Multiswarm(client, settings)
    store, coord = await _swarm_a(scripts, keys)

    async def run_all() -> None:
        await coord.dispatch_once()
        for c in await store.claim("a", "w1", 10):
            await store.complete(c.id, c.token, "w1", c.id)

    await store.submit([(task_spec(NOOP, id="before"), None)])
    await run_all()  # a completion already in the stream
    before = await _last_entry(client, keys.completions)
    tid = await ms.distribute_task(NOOP, None)
    # the submission's reply said where the stream stood: the waiter starts there, blocking,
    # with no first look of its own (decision 96)
    assert ms.tasks.cursors[tid] == before
    steps = _count_steps(ms)
    await run_all()  # completed before anyone waits: its entry follows the cursor
    assert await ms.result(tid, timeout_s=10) == tid
    assert steps == [before] and tid not in ms.tasks.cursors


async def test_a_store_keeps_the_cursors_of_its_latest_submissions_only(
    scripts: Scripts, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks_module, "WAITER_CURSORS", 3)
    store = TaskStore(scripts, keys)
    await store.submit([(task_spec(NOOP, id=f"t{i}"), None) for i in range(5)])
    assert list(store.cursors) == ["t2", "t3", "t4"]  # bounded, the oldest dropped


async def test_a_resubmitted_task_that_already_ended_is_read_at_once(
    settings: Settings, client: Client, scripts: Scripts, keys: Keys
) -> None:
    # resubmitting a task id is idempotent ('exists'): its completion may lie before the
    # submission's cursor, so its waiter looks first instead of blocking out a step (found in
    # review: result() took the 1 s step)
    ms = Multiswarm(client, settings)
    store, coord = await _swarm_a(scripts, keys)
    await store.submit([(task_spec(NOOP, id="t"), None)])
    await coord.dispatch_once()
    for c in await store.claim("a", "w1", 10):
        await store.complete(c.id, c.token, "w1", "done")
    assert await ms.tasks.submit([(task_spec(NOOP, id="t"), None)]) == {"t": "exists"}
    assert "t" not in ms.tasks.cursors
    steps = _count_steps(ms)
    assert await ms.result("t", timeout_s=10) == "done"
    assert steps == [None]  # one step: the first look, which found it completed


async def test_a_waiter_blocks_no_longer_than_half_the_socket_timeout(settings: Settings) -> None:
    # a result's step blocks at most half the connections' socket timeout: a longer block ended
    # in a read timeout, retried as an outage until the reconnect window ran out (found in
    # review: RedisUnavailable after 6.5 s instead of TimeoutError at 2 s)
    short = settings.replace(socket_timeout_ms=400, reconnect_timeout_s=3.0)
    client = connect(short)
    try:
        ms = Multiswarm(client, short)
        tid = await ms.distribute_task(NOOP, None)  # no worker: it never runs
        assert ms.tasks.scripts.block_limit_ms == 200
        with pytest.raises(TimeoutError, match=f"task {tid} still ready after 1.5 s"):
            await ms.result(tid, timeout_s=1.5)
    finally:
        await client.aclose()


async def test_a_cluster_client_s_waits_follow_its_socket_timeout_too() -> None:
    # a cluster client has no connection pool of its own: its limit fell back to 5 s (2.5 s
    # blocks) whatever its socket timeout, as above for every client before (found in review)
    short = Settings(
        redis_url="redis+cluster://127.0.0.1:7999", redis_url_explicit=True, socket_timeout_ms=400
    )
    client = connect(short)  # (a cluster client connects at its first command: none here)
    try:
        assert Scripts(client).block_limit_ms == 200
    finally:
        await client.aclose()


async def test_a_failed_wait_that_is_no_refusal_keeps_claims_waiting_in_redis(
    client: Client, scripts: Scripts, keys: Keys
) -> None:
    # an XREAD that fails for another reason than a refusal (here the wake-up stream's key
    # holds a string) fails that wait only: the claim runs, and the next one still waits in
    # Redis (found in review: any error switched the process to PUBLISH for good)
    store, coord = await _swarm_a(scripts, keys, "t1")
    await client.set(keys.wake_swarm("a"), "not a stream")
    woken, claimed = await store.claim_when_woken("a", "w1", 4, "0-0", 20_000)
    assert woken is None and [c.id for c in claimed] == ["t1"]
    assert store.can_claim_when_woken and coord.can_dispatch_when_woken


async def test_a_woken_call_whose_function_is_gone_loads_it_through_an_outage(
    own_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the server lost the function library (FUNCTION FLUSH, a restart without persistence):
    # the woken call loads it and runs the script, retried as any call when the load meets a
    # dropped connection (found in review: that error escaped untranslated, and a claim loop,
    # which catches MultiswarmError, would have stopped)
    settings = Settings(redis_url=own_redis.url, redis_url_explicit=True, namespace=namespace)
    client = connect(settings)
    try:
        scripts, keys = Scripts(client, reconnect_timeout_s=10.0), Keys(namespace)
        await scripts.load()
        store, _ = await _swarm_a(scripts, keys, "t1")
        await client.function_flush()
        load, drops = scripts.load, list[str]()

        async def load_after_a_drop() -> None:
            if not drops:
                drops.append("dropped")
                raise redis.exceptions.ConnectionError("connection lost while loading")
            await load()

        monkeypatch.setattr(scripts, "load", load_after_a_drop)
        _, claimed = await store.claim_when_woken("a", "w1", 4, "0-0", 100)
        assert [c.id for c in claimed] == ["t1"] and drops == ["dropped"]
    finally:
        await client.aclose()
