"""Several plain reads in one write on a kept connection (``DirectCalls.call_many``, decision
65): replies in order, an error reply raised only once every reply is read (the connection
stays in step for the next call), a killed connection retried by the scripts' backoff."""

from __future__ import annotations

import pytest
import redis.exceptions

from multiswarm.connection import Client, DirectCalls
from multiswarm.scripts import Scripts


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
    (own_id,) = await scripts.read_many(("CLIENT", "ID")) or [None]
    assert await client.client_kill_filter(_id=own_id) == 1
    assert await scripts.read_many(("GET", "k"), ("ECHO", "x")) == [b"v", b"x"]
