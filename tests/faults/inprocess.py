"""One :class:`~multiswarm.worker.Worker` in the test's event loop, a coordinator process beside it.

For fault tests that need to reach inside a worker (replace one of its calls with a failing or
slow one) while everything else is real: the private redis-server, the Lua scripts, the agent
processes, and a leader in its own process dispatching and reaping expired leases (so a stall of
this event loop does not stall the leader too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.registry import SwarmSpec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore
from multiswarm.worker import Worker
from tests.integration.helpers import eventually


class System(msgspec.Struct, kw_only=True):
    worker: Worker
    #: ``worker.run(stop)`` as a task: it ends on ``stop`` or when the worker fails
    run: asyncio.Task[None]
    stop: asyncio.Event
    store: TaskStore
    keys: Keys

    async def running(self, task_id: str) -> None:
        """Wait until ``task_id`` runs on this worker."""

        async def on_worker() -> bool:
            t = await self.store.get(task_id)
            return t.status == "running" and t.worker == self.worker.id

        await eventually(on_worker, timeout_s=60, what=f"{task_id} running")


@contextlib.asynccontextmanager
async def worker_system(
    settings: Settings,
    swarms: Sequence[SwarmSpec],
    log_dir: Path,
    *,
    worker_id: str = "w1",
    **options: Any,
) -> AsyncIterator[System]:
    """Start a coordinator process and a worker; on exit stop both (bounded waits)."""
    keys = Keys(settings.namespace)
    group = ProcessGroup(settings, log_dir)
    group.spawn("coordinator", ["coordinator", "--id", "coord"])
    worker = Worker(settings, swarms, worker_id=worker_id, **options)
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run(stop))
    store = TaskStore(Scripts(connect(settings), settings.reconnect_timeout_s), keys)
    try:
        yield System(worker=worker, run=run, stop=stop, store=store, keys=keys)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 60)
        await store.client.aclose()
        await asyncio.to_thread(group.stop_all)
