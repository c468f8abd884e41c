"""The backlog that routes new submissions among partitions (decision 47) counts ready
(queued and parked), pending and assigned tasks off the structures that hold them: ready,
assigned and running have no status index since decision 61."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from multiswarm import Multiswarm, partition_api
from multiswarm.config import Settings
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from ..integration.helpers import host, leader

P = 3
NOOP = "multiswarm.demo_tasks:noop"


@pytest.fixture
async def ms(settings: Settings) -> AsyncIterator[Multiswarm]:
    facade = await Multiswarm.connect(settings=settings.replace(partitions=P), actor="tester")
    yield facade
    await facade.close()


async def test_the_backlog_counts_ready_parked_pending_and_assigned_tasks(
    ms: Multiswarm, scripts: Scripts, namespace: str
) -> None:
    parts = Keys.all(namespace, P)
    stores = [TaskStore(scripts, k) for k in parts]
    # partition 0: three queued tasks
    await stores[0].submit([(task_spec(NOOP, id=f"a{i}"), i) for i in range(3)])
    # partition 1: one parked (no swarm offers gpu), two assigned, one running
    await host(scripts, parts[1], "w1", ("s1", []), capacity=3)
    await stores[1].submit([(task_spec(NOOP, id="gpu", capabilities=["gpu"]), 0)])
    coord = await leader(scripts, parts[1])
    for _ in range(2):
        await coord.dispatch_once()
    assert await scripts.client.zcard(parts[1].parked("gpu")) == 1
    await stores[1].submit([(task_spec(NOOP, id=f"b{i}"), i) for i in range(3)])
    while await coord.dispatch_once():
        pass
    assert len(await stores[1].claim("s1", "w1", 1)) == 1
    # partition 2: one queued, one pending on it, one completed (not in the backlog)
    await host(scripts, parts[2], "w2", ("s2", []), capacity=1)
    await stores[2].submit([(task_spec(NOOP, id="c0"), 0)])
    coord2 = await leader(scripts, parts[2])
    await coord2.dispatch_once()
    [done] = await stores[2].claim("s2", "w2", 1)
    assert await stores[2].complete(done.id, done.token, "w2", None) == "completed"
    await stores[2].submit(
        [(task_spec(NOOP, id="c1"), 1), (task_spec(NOOP, id="c2", depends_on=["c1"]), 2)]
    )
    counts = [await s.counts() for s in stores]
    assert [(c["ready"], c["pending"], c["assigned"], c["running"]) for c in counts] == [
        (3, 0, 0, 0),
        (1, 0, 2, 1),
        (1, 1, 0, 0),
    ]
    assert await partition_api._read_backlogs(ms) == [3, 3, 2]
    assert await partition_api.backlogs(ms) == [3, 3, 2]
