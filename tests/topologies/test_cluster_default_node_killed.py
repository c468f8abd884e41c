"""A cluster client whose default node (the commands parser's node) is killed recovers on the
promoted replica: redis-py 8.1 asks that node ``COMMAND GETKEYS`` for every ``FCALL`` before its
own retry loop, so without :func:`multiswarm.connection.refresh_topology` the error never
triggers a slot map refresh and every retry asks the dead node again (the demo stalled)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from multiswarm.config import Settings
from multiswarm.connection import connect, with_retry
from multiswarm.redis_topologies import RedisClusterGroup
from tests.integration.helpers import wait_sync

pytestmark = pytest.mark.slow

_LIBRARY = (
    "#!lua name=fo_probe\n"
    "redis.register_function('fo_get', function(keys, args) return redis.call('GET', keys[1]) end)"
)


def _replica_caught_up(master_port: int) -> None:
    """Until the replica of the master at ``master_port`` acknowledged all its writes so far."""
    master = redis.Redis(port=master_port)
    try:
        target = int(master.info("replication")["master_repl_offset"])

        def caught_up() -> bool:
            info = master.info("replication")
            replica = info.get("slave0")
            return isinstance(replica, dict) and int(replica["offset"]) >= target

        wait_sync(caught_up, timeout_s=30, what="the replica caught up with its master")
    finally:
        master.close()


async def _scenario(group: RedisClusterGroup) -> float:
    client = connect(Settings(redis_url=group.url, redis_url_explicit=True))
    try:
        await client.function_load(_LIBRARY, replace=True)
        victim_name = client.get_default_node().name  # type: ignore[attr-defined]
        # a key on the victim's slots: the call also needs the promoted replica's slot map
        key = next(
            f"k{i}"
            for i in range(10_000)
            if client.get_node_from_key(f"k{i}").name == victim_name  # type: ignore[attr-defined]
        )
        await client.set(key, "v")
        victim = next(n for n in group.nodes if f"127.0.0.1:{n.port}" == victim_name)
        # the replica has the key before its master dies (acknowledged, not a fixed sleep: a
        # loaded machine may take longer)
        await asyncio.to_thread(_replica_caught_up, victim.port)
        assert await client.fcall("fo_get", 1, key) == b"v"
        victim.kill()
        start = time.monotonic()
        reply = await with_retry(lambda: client.fcall("fo_get", 1, key), 30.0, client)
        assert reply == b"v"
        return time.monotonic() - start
    finally:
        await client.aclose()


def test_fcall_recovers_after_the_default_node_is_killed() -> None:
    with RedisClusterGroup(masters=3, replicas=1) as group:
        took = asyncio.run(_scenario(group))
    assert took < 25.0
