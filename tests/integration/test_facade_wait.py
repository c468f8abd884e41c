"""`Multiswarm.wait_for` / `result` against a running system: the result of a completed task,
TaskFailed for a task that ended dead, TimeoutError for one nobody can run.

The waiter blocks on the completions stream; submissions wake the leader (`task_submitted`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multiswarm import Multiswarm, TaskFailed
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.launcher import ProcessGroup
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def system(settings: Settings, tmp_path: Path) -> AsyncIterator[Multiswarm]:
    group = ProcessGroup(settings, tmp_path)
    group.spawn("coordinator", ["coordinator", "--id", "c1"])
    group.spawn("worker", ["worker", "--id", "w1", "--swarm", "s:work:2"])
    ms = Multiswarm(connect(settings), settings)
    try:

        async def ready() -> bool:
            return any(s.status == "active" for s in await ms.registry.swarms())

        await eventually(ready, timeout_s=60, what="the swarm active")
        yield ms
    finally:
        await ms.close()
        group.stop_all()


async def test_wait_for_returns_each_result(system: Multiswarm) -> None:
    for i in range(20):
        tid = await system.distribute_task(
            "multiswarm.demo_tasks:noop", {"n": i}, capabilities=["work"]
        )
        assert await system.result(tid, timeout_s=30) == {"n": i}


async def test_wait_for_raises_when_the_task_ends_dead(system: Multiswarm) -> None:
    tid = await system.distribute_task(
        "multiswarm.demo_tasks:fail_always", None, capabilities=["work"], max_attempts=1
    )
    with pytest.raises(TaskFailed) as err:
        await system.wait_for(tid, timeout_s=30)
    assert err.value.task.status == "dead"


async def test_wait_for_times_out(system: Multiswarm) -> None:
    tid = await system.distribute_task("multiswarm.demo_tasks:noop", 1, capabilities=["none"])
    with pytest.raises(TimeoutError, match="still ready"):
        await system.wait_for(tid, timeout_s=1.5)
