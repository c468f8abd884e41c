"""Cancelling a running task stops its handler and frees its agent.

Before, `cancel` only marked the record: the handler ran on for its whole timeout and the
agent stayed busy. Now the worker is told at once (and by its next lease renewal at the
latest), stops the handler cooperatively (a signal raises TaskStopped inside it, its `finally`
blocks run, the agent process lives on) and the agent takes the next task.

The swarm has one agent and the handler sleeps 60 s: the second task can only complete within
the test's 30 s bound if the first handler was really stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.errors import RedisUnavailable
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.registry import swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow

SLEEP = "multiswarm.demo_tasks:sleep_then_return"


async def test_cancel_stops_the_handler_and_frees_the_agent(
    settings: Settings, tmp_path: Path
) -> None:
    group = ProcessGroup(settings.replace(heartbeat_timeout_ms=3000, lease_ms=2000), tmp_path)
    group.spawn("coordinator", ["coordinator", "--id", "coord"])
    group.spawn("w1", ["worker", "--id", "w1", "--swarm", "s:slow:1"])
    store = TaskStore(Scripts(connect(settings)), Keys(settings.namespace))
    try:
        spec = task_spec(SLEEP, id="long", capabilities=["slow"], timeout_ms=120_000)
        await store.submit([(spec, {"seconds": 60})])

        async def running() -> bool:
            return (await store.get("long")).status == "running"

        await eventually(running, timeout_s=60, what="the long task running")
        assert await store.cancel("long") == "cancelled"

        nxt = task_spec(SLEEP, id="next", capabilities=["slow"])
        await store.submit([(nxt, {"seconds": 0.1})])

        async def next_done() -> bool:
            return (await store.get("next")).status == "completed"

        await eventually(next_done, timeout_s=30, what="the next task on the freed agent")
        long = await store.get("long")
        assert long.status == "cancelled" and long.attempts == 1
        assert (await store.stats()).get("completed", 0) == 1
        log = (tmp_path / "w1.log").read_text() if (tmp_path / "w1.log").exists() else ""
        assert "killed" not in log, log[-2000:]  # stopped cooperatively, not by SIGKILL
    finally:
        await store.client.aclose()
        group.stop_all()


async def test_a_cancel_notice_it_cannot_check_leaves_the_stop_to_the_lease_renewal(
    settings: Settings, tmp_path: Path
) -> None:
    """The notice's check of the record fails (Redis unreachable past the reconnect window, an
    undecodable record): before, the error ended the notice loop and so the worker; now the
    notice is dropped and the next lease renewal, which finds the lease gone, stops the run."""
    settings = settings.replace(task_lease_ms=3000)
    spec = swarm_spec("s", ["slow"], agents=1)
    async with worker_system(settings, [spec], tmp_path, concurrency=1) as system:
        await system.store.submit(
            [
                (
                    task_spec(SLEEP, id="long", capabilities=["slow"], timeout_ms=120_000),
                    {"seconds": 60},
                )
            ]
        )
        await system.running("long")

        async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
            raise RedisUnavailable("injected: Redis unreachable for 10 s")

        system.worker.tasks.get = unreachable  # type: ignore[method-assign]
        assert await system.store.cancel("long") == "cancelled"
        nxt = task_spec(SLEEP, id="next", capabilities=["slow"])
        await system.store.submit([(nxt, {"seconds": 0.1})])

        async def next_done() -> bool:
            return (await system.store.get("next")).status == "completed"

        await eventually(next_done, timeout_s=30, what="the next task on the freed agent")
        assert not system.run.done() and system.worker._failure is None
