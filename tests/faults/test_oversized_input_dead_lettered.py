"""A task whose input can never fit an agent's share of the node's memory pool ends dead.

A worker with a 1 MiB pool and 2 agents gives each agent 512 KiB; a 700 KB payload (under the
1 MiB payload limit) never fits. Handing it back without counting the attempt loops forever
(ready -> assigned -> running -> handed back -> ready ...). It must be dead-lettered with a reason
that says why, after one attempt, and the worker must go on running other tasks.
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

NOOP = "multiswarm.demo_tasks:noop"


async def test_input_larger_than_the_agent_share_is_dead_lettered(
    settings: Settings, tmp_path: Path
) -> None:
    group = ProcessGroup(settings.replace(heartbeat_timeout_ms=3000, lease_ms=2000), tmp_path)
    group.spawn("registry", ["registry"])
    group.spawn("coordinator", ["coordinator", "--id", "coord"])
    group.spawn("w1", ["worker", "--id", "w1", "--swarm", "s:big:2", "--memory-mb", "1"])
    store = TaskStore(Scripts(connect(settings)), Keys(settings.namespace))
    try:
        await store.submit([(task_spec(NOOP, id="big", capabilities=["big"]), b"x" * 700_000)])

        async def ended() -> bool:
            return (await store.get("big")).status in ("dead", "completed", "cancelled")

        await eventually(ended, timeout_s=30, what="the oversized task ending")

        t = await store.get("big")
        assert (t.status, t.attempts) == ("dead", 1)
        assert "exceeds the agent's memory share" in t.error, t.error
        assert "700" in t.error  # the input size is named

        # the worker is not stuck: a small task of the same swarm completes
        await store.submit([(task_spec(NOOP, id="small", capabilities=["big"]), b"y")])

        async def small_done() -> bool:
            return (await store.get("small")).status == "completed"

        await eventually(small_done, timeout_s=30, what="a small task completing")
    finally:
        await store.client.aclose()
        group.stop_all()
