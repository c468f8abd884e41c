"""Lease reaping ran only after a successful dispatch: a dispatch that kept failing stopped it.

The leader's loop reaped expired leases after ``dispatch_once`` returned, so one persistent
dispatch error (here: a key of the wrong type) meant no expired lease was ever re-queued. Now the
leader reaps on its own timer, whatever dispatch does.
"""

from __future__ import annotations

import asyncio
import contextlib

from multiswarm.coordinator import SwarmCoordinator
from multiswarm.coordinator_process import run_coordinator
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import eventually, host

NOOP = "multiswarm.demo_tasks:noop"


async def test_expired_lease_reaped_while_dispatch_fails(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("s", []))
    coord = SwarmCoordinator(scripts, keys, lease_ms=30_000, reap_interval_s=0.1)
    assert await coord.election.try_acquire()
    await store.submit([(task_spec(NOOP, id="t", lease_ms=1000, backoff_ms=60_000), None)])
    assert await coord.dispatch_once() == 1
    assert len(await store.claim("s", "w1", 1)) == 1  # ... and the worker dies: nobody renews

    # from now on every dispatch fails (WRONGTYPE on the round-robin cursor)
    await scripts.client.rpush(keys.rr_cursor, "not-a-string")
    stop = asyncio.Event()
    runner = asyncio.create_task(run_coordinator(coord, stop))
    try:

        async def reaped() -> bool:
            return (await store.get("t")).status == "failed"

        await eventually(reaped, timeout_s=5, what="the expired lease reaped")
        task = await store.get("t")
        assert task.attempts == 1 and "lease expired" in task.error
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, 10)
