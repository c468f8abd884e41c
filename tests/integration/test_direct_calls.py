"""Several plain reads in one write on a kept connection (``DirectCalls.call_many``, decision
65): replies in order, an error reply raised only once every reply is read (the connection
stays in step for the next call), a killed connection retried by the scripts' backoff."""

from __future__ import annotations

import pytest
import redis.exceptions

from multiswarm.connection import Client, DirectCalls
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec


async def test_replies_come_in_order_and_an_error_leaves_the_connection_in_step(
    client: Client,
) -> None:
    direct = DirectCalls.for_client(client)
    assert direct is not None
    await client.set("k", "v")
    await client.hset("h", "f", "x")
    assert await direct.call_many(("GET", "k"), ("HGET", "h", "f"), ("GET", "none")) == [
        b"v",
        b"x",
        None,
    ]
    # HGET on a string key: a WRONGTYPE reply between two good ones
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        await direct.call_many(("GET", "k"), ("HGET", "k", "f"), ("ECHO", "late"))
    assert len(direct.idle) == 1  # the same connection, kept
    # the reply after the error was read with it: the next call gets its own replies
    assert await direct.call_many(("ECHO", "a"), ("ECHO", "b")) == [b"a", b"b"]


async def test_a_killed_connection_is_retried_with_backoff(client: Client) -> None:
    scripts = Scripts(client, reconnect_timeout_s=10.0)
    await client.set("k", "v")
    # CLIENT ID runs on the kept connection: the id of the connection to kill
    (own_id,) = await scripts.read_many(("CLIENT", "ID"))
    assert await client.client_kill_filter(_id=own_id) == 1
    assert await scripts.read_many(("GET", "k"), ("ECHO", "x")) == [b"v", b"x"]


@pytest.mark.parametrize("kept", [True, False], ids=["kept connection", "pipeline"])
async def test_a_waiters_steps_read_the_same_on_both_paths(
    client: Client, keys: Keys, kept: bool
) -> None:
    scripts = Scripts(client, reconnect_timeout_s=10.0)
    if not kept:  # as on a cluster client: no direct calls
        scripts._direct = None
    await scripts.load()
    store = TaskStore(scripts, keys)
    (tid,) = await store.submit([(task_spec("m.x:f"), 1)])
    read, task, packed = await store.wait_step(tid, None, 0)
    assert read == [] and task.id == tid and packed is None  # no completion yet
    first = await client.xadd(keys.completions, {"task": "other"})
    last = await client.xadd(keys.completions, {"task": tid})
    read, _, _ = await store.wait_step(tid, None, 0)
    assert read[0][0] == last  # XREVRANGE: the stream's last entry
    read, _, _ = await store.wait_step(tid, "0-0", 1)
    [(stream, entries)] = read  # XREAD: [(stream, entries)] on both paths
    assert stream in (keys.completions, keys.completions.encode())
    assert [e[0] for e in entries] == [first, last]
    read, _, _ = await store.wait_step(tid, last, 1)  # timed out: nothing after the cursor
    assert not read
