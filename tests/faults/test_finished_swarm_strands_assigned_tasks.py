"""A swarm that finishes (completed/failed) with tasks in its queue stranded them ``assigned``.

Nobody claims from a finished swarm, so its queued tasks stayed ``assigned`` forever and its
queue key was never deleted. Now the transition to a finished status puts them back to ready for
other swarms (attempt not counted) and deletes the queue.
"""

from __future__ import annotations

import pytest

from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"


@pytest.mark.parametrize("end", ["completed", "failed"])
async def test_finishing_a_swarm_requeues_its_queue(scripts: Scripts, keys: Keys, end: str) -> None:
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("done", ["c"]), capacity=4)
    coord = await leader(scripts, keys)
    ids = [f"t{i}" for i in range(4)]
    await store.submit([(task_spec(NOOP, id=t, capabilities=["c"]), None) for t in ids])
    assert await coord.dispatch_once() == 4
    (running,) = await store.claim("done", "w1", 1)

    await registry.transition("done", end)
    queued = [t for t in await store.get_many(ids) if t is not None and t.id != running.id]
    assert {(t.status, t.swarm, t.attempts) for t in queued} == {("ready", "", 0)}
    assert await scripts.client.exists(keys.queue("done")) == 0
    assert (await store.get(running.id)).status == "running"  # its worker finishes it
    assert (await registry.get("done")).active == 1

    # another capable swarm takes them at the next round
    await host(scripts, keys, "w2", ("next", ["c"]))
    assert await coord.dispatch_once() == 3
    assert {t.swarm for t in await store.get_many([t.id for t in queued]) if t} == {"next"}
