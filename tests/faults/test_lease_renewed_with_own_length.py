"""A worker renews each task's lease with that task's own length, not the batch's shortest.

Two tasks run side by side on one healthy worker, one with a 1 s lease and one with a 6 s lease,
each for 8 s. Renewing both with the shortest lease gives the 6 s task a 1 s lease that is not
renewed again for a third of its own lease (2 s): the leader reaps it while its worker is healthy
and it runs a second time. Each must run once, with one attempt.
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
from tests.integration.helpers import eventually, stream_entries

pytestmark = pytest.mark.slow

SLEEP = "multiswarm.demo_tasks:sleep_then_return"


async def test_long_lease_is_not_cut_to_the_shortest_one(
    settings: Settings, tmp_path: Path
) -> None:
    group = ProcessGroup(settings.replace(heartbeat_timeout_ms=3000, lease_ms=2000), tmp_path)
    group.spawn("registry", ["registry"])
    group.spawn("coordinator", ["coordinator", "--id", "coord"])
    group.spawn("w1", ["worker", "--id", "w1", "--swarm", "s:sleep:2"])
    keys = Keys(settings.namespace)
    store = TaskStore(Scripts(connect(settings)), keys)
    try:
        await store.submit(
            [
                (
                    task_spec(SLEEP, id="short", capabilities=["sleep"], lease_ms=1000),
                    {"seconds": 8},
                ),
                (
                    task_spec(SLEEP, id="long", capabilities=["sleep"], lease_ms=6000),
                    {"seconds": 8},
                ),
            ]
        )

        async def both_running() -> bool:
            return len(await store.list("running")) == 2

        await eventually(both_running, timeout_s=60, what="both tasks running on w1")

        async def both_completed() -> bool:
            return (await store.counts())["completed"] == 2

        await eventually(both_completed, timeout_s=60, what="both tasks completed")

        stats = await store.stats()
        # a reaped lease counts a retry (and the second run another execution)
        assert (stats.get("retries", 0), stats["executions"]) == (0, 2), stats
        for tid in ("short", "long"):
            t = await store.get(tid)
            assert (t.status, t.attempts, t.worker, t.error) == ("completed", 1, "w1", ""), tid
        completions = await stream_entries(store.client, keys.completions)
        assert sorted(f[b"task"] for _, f in completions) == [b"long", b"short"]
    finally:
        await store.client.aclose()
        group.stop_all()
