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

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
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
