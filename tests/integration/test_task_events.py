"""Task lifecycle events on ``<ns>:events`` (issue 14, item 7): every status change of a task is
published by the script that makes it, and a subscriber with a signing secret still takes them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from multiswarm import Multiswarm
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.envelopes import Delivered
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger
from multiswarm.redis_server import RedisServer
from multiswarm.registry import swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.subscription import EVENTS_WATCH_MS
from multiswarm.tasks import TaskStore, task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually, reap, wait_sync

pytestmark = pytest.mark.slow

NOOP = "multiswarm.demo_tasks:noop"


async def start_collecting(
    listener: SwarmMessenger, channel: str, sink: list[Delivered]
) -> asyncio.Task[None]:
    """A task appending what ``listener`` hears on ``channel`` to ``sink``, once subscribed."""
    ready = asyncio.Event()

    async def collect() -> None:
        async with contextlib.aclosing(listener.listen([channel], ready)) as stream:
            async for _, env in stream:
                sink.append(env)

    collector = asyncio.create_task(collect())
    await asyncio.wait_for(ready.wait(), 10)
    return collector


async def test_lifecycle_events_of_a_task_that_completes_and_one_that_dies(
    settings: Settings, tmp_path: Path
) -> None:
    keys = Keys(settings.namespace)
    client = connect(settings)
    # a secret: signed messages only, except task events, which Lua cannot sign
    listener = SwarmMessenger(client, keys, "watcher", secret="s3cret")
    events: list[Delivered] = []
    collector = await start_collecting(listener, keys.ch_events, events)
    try:
        swarms = [swarm_spec("s", ["x"], agents=1)]
        async with worker_system(settings, swarms, tmp_path) as system:
            await system.store.submit(
                [
                    (task_spec("multiswarm.demo_tasks:noop", id="ok", capabilities=["x"]), 1),
                    (
                        task_spec(
                            "multiswarm.demo_tasks:fail_always",
                            id="bad",
                            capabilities=["x"],
                            max_attempts=1,
                        ),
                        1,
                    ),
                ]
            )

            def kinds(task: str) -> list[str]:
                return [e.type for e in events if e.payload.get("task") == task]

            for _ in range(300):
                if "task.completed" in kinds("ok") and "task.dead" in kinds("bad"):
                    break
                await asyncio.sleep(0.1)
        assert kinds("ok") == ["task.submitted", "task.assigned", "task.started", "task.completed"]
        assert kinds("bad") == ["task.submitted", "task.assigned", "task.started", "task.dead"]
        done = next(e for e in events if e.type == "task.completed")
        assert done.sender == "redis" and done.payload["swarm"] == "s"
        assert done.payload["worker"] == "w1" and done.payload["attempt"] == 1
        assert done.payload["run_ms"] >= 0 and done.payload["handler"].endswith(":noop")
        dead = next(e for e in events if e.type == "task.dead")
        assert "failing on purpose (attempt 1)" in dead.payload["error"]
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await listener.stop()
        await client.aclose()


def test_messages_tail_events_prints_task_events(redis_server: RedisServer, namespace: str) -> None:
    """`multiswarm-cli messages tail events` follows the task events (it stayed empty before)."""
    env = {
        **os.environ,
        "MULTISWARM_REDIS_URL": redis_server.url,
        "MULTISWARM_NAMESPACE": namespace,
    }
    tail = subprocess.Popen(
        [sys.executable, "-m", "multiswarm", "messages", "tail", "events", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tail.stdout is not None
    out = tail.stdout
    try:

        async def submit() -> str:
            async with await Multiswarm.connect(redis_server.url, namespace) as ms:
                return await ms.distribute_task("myapp.tasks:parse", {"a": 1}, capabilities=["x"])

        line = ""
        # the tail subscribes after it starts (slowly on a loaded machine): submit until it
        # sees one
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            task_id = asyncio.run(submit())
            ready, _, _ = select.select([out], [], [], 0.2)
            if ready:
                line = out.readline()
                break
        event = json.loads(line)
        assert event["type"] == "task.submitted" and event["sender"] == "redis", line
        assert event["payload"]["handler"] == "myapp.tasks:parse" and event["payload"]["task"]
        assert task_id
    finally:
        tail.terminate()
        try:
            tail.communicate(timeout=60)
        finally:
            reap(tail)
    assert tail.returncode == 0  # SIGTERM ends a tail cleanly


def test_messages_tail_exits_1_when_redis_goes_away(own_redis: RedisServer) -> None:
    """A tail whose Redis stays gone ends with status 1 and one line (issue 14, item 13)."""
    env = {**os.environ, "MULTISWARM_REDIS_URL": own_redis.url}
    tail = subprocess.Popen(
        [sys.executable, "-m", "multiswarm", "messages", "tail", "events"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        probe = redis.Redis(port=own_redis.port)
        try:  # killed once it listens: a subscriber on the events channel

            def subscribed() -> bool:
                return bool(probe.pubsub_numsub("swarm:events")[0][1])

            wait_sync(subscribed, timeout_s=60, what="the tail subscribed")
        finally:
            probe.close()
        own_redis.kill()
        _, err = tail.communicate(timeout=90)
    finally:
        reap(tail)
    last = err.strip().splitlines()[-1]
    assert tail.returncode == 1 and last.startswith("Error: ") and "Traceback" not in err, err


async def _next_data(pubsub: Any) -> bytes:
    for _ in range(100):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if msg is not None:
            return bytes(msg["data"])
    raise AssertionError("no message within 10 s")


async def test_task_events_are_published_only_while_someone_listens(settings: Settings) -> None:
    """Scripts skip the encode and PUBLISH of task events unless a listener keeps the events
    watch key alive (decision 37); a listener through the messenger sets it before it is ready."""
    keys = Keys(settings.namespace)
    client = connect(settings)
    store = TaskStore(Scripts(client), keys)
    bare: Any = client.pubsub()  # subscribed, but without the notice
    listener = SwarmMessenger(client, keys, "watcher")
    try:
        await bare.subscribe(keys.ch_events)
        await store.submit([(task_spec(NOOP, id="unwatched"), 1)])
        await client.publish(keys.ch_events, b"marker")
        assert await _next_data(bare) == b"marker"  # nothing came before it

        seen: list[Delivered] = []
        collector = await start_collecting(listener, keys.ch_events, seen)
        assert 0 < await client.pttl(keys.events_watch) <= EVENTS_WATCH_MS
        await store.submit([(task_spec(NOOP, id="watched"), 1)])
        event = json.loads(await _next_data(bare))
        assert (event["type"], event["payload"]["task"]) == ("task.submitted", "watched")
        # the listener got the same frame: let it read it, then stop it

        async def heard() -> bool:
            return bool(seen)

        await eventually(heard, timeout_s=10, what="the listener heard the event")
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        assert [e.payload["task"] for e in seen] == ["watched"]
    finally:
        await bare.aclose()
        await listener.stop()
        await client.aclose()
