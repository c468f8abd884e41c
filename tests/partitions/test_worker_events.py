"""A listener of task events hears the tasks of every coordination partition (decision 44)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.envelopes import Delivered
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.test_task_events import start_collecting

P = 3


async def test_listener_hears_task_events_of_every_partition(settings: Settings) -> None:
    ns = settings.namespace
    client = connect(settings)
    scripts = Scripts(client, settings.reconnect_timeout_s)
    keys = Keys(ns, 0, P)
    listener = SwarmMessenger(client, keys, "watcher")
    events: list[Delivered] = []
    collector = await start_collecting(listener, keys.ch_events, events)
    try:
        for k in range(P):  # the listener set every partition's watch key
            assert await client.exists(Keys(ns, k, P).events_watch) == 1
        for k in (1, 2):
            await TaskStore(scripts, Keys(ns, k, P)).submit(
                [(task_spec("myapp.tasks:parse", id=f"in{k}", capabilities=["x"]), 1)]
            )

        def heard() -> set[object]:
            return {e.payload.get("task") for e in events if e.type == "task.submitted"}

        deadline = time.monotonic() + 30  # 5 s was short for a loaded machine
        while not heard() >= {"in1", "in2"} and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert heard() == {"in1", "in2"}
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await listener.stop()
        await client.aclose()
