"""Redis restarts (AOF on): clients reconnect with backoff, scripts reload by SHA, and a running
system finishes its work with nothing lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.redis_server import RedisServer
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import eventually, host, leader

pytestmark = pytest.mark.slow


def _settings(server: RedisServer, namespace: str) -> Settings:
    return Settings(
        redis_url=server.url, redis_url_explicit=True, namespace=namespace, reconnect_timeout_s=30.0
    )


async def test_scripts_survive_a_restart(own_redis: RedisServer, namespace: str) -> None:
    client = connect(_settings(own_redis, namespace))
    scripts, keys = Scripts(client, reconnect_timeout_s=30.0), Keys(namespace)
    store = TaskStore(scripts, keys)
    try:
        await host(scripts, keys, "w1", ("s", []))
        await store.submit([(task_spec("multiswarm.demo_tasks:noop", id="before"), 1)])
        own_redis.kill()  # SIGKILL: no shutdown save, only the AOF
        restart = asyncio.create_task(asyncio.to_thread(own_redis.start))
        # this call starts while the server is down: it retries until the server is back,
        # then FCALL finds no function and the library is loaded again
        coord = await leader(scripts, keys)
        await restart
        assert await coord.dispatch_once() == 1
        assert (await store.get("before")).status == "assigned"
    finally:
        await client.aclose()


async def test_running_system_finishes_through_a_restart(
    own_redis: RedisServer, namespace: str, tmp_path: Path
) -> None:
    settings = _settings(own_redis, namespace).replace(heartbeat_timeout_ms=5000, lease_ms=3000)
    group = ProcessGroup(settings, tmp_path)
    group.spawn("registry", ["registry"])
    group.spawn("coordinator", ["coordinator", "--id", "c1"])
    group.spawn("worker", ["worker", "--id", "w1", "--swarm", "s:work:2"])
    client = connect(settings)
    store = TaskStore(Scripts(client, reconnect_timeout_s=30.0), Keys(namespace))
    try:
        n = 30
        await store.submit(
            [
                (
                    task_spec(
                        "multiswarm.demo_tasks:sleep_then_return",
                        id=f"t{i}",
                        capabilities=["work"],
                        lease_ms=4000,
                    ),
                    {"seconds": 0.2},
                )
                for i in range(n)
            ]
        )

        async def some_done() -> bool:
            return (await store.counts())["completed"] >= 3

        await eventually(some_done, what="first completions")
        own_redis.kill()
        await asyncio.to_thread(own_redis.start)

        async def all_done() -> bool:
            return (await store.counts())["completed"] == n

        await eventually(all_done, timeout_s=90, what="all tasks completed after the restart")
        entries: Any = await client.xrange(Keys(namespace).completions)
        recorded = [f[b"task"] for _, f in entries]
        assert sorted(recorded) == sorted(f"t{i}".encode() for i in range(n))
        assert all(c.alive() for c in group.children)  # nobody crashed on the way
    finally:
        await client.aclose()
        group.stop_all()
