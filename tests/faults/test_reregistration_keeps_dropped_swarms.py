"""A worker re-registering under the same id with other swarms stayed host of the old ones.

The swarm it no longer serves kept it in ``hosts``, so the leader went on assigning to a swarm
nobody claims from and its queued tasks stayed ``assigned`` forever. Now re-registration drops the
worker from swarms it no longer hosts; a swarm left with no host is interrupted like
reap_workers does, and its queued tasks go back to ready.
"""

from __future__ import annotations

from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"


async def test_reregistration_drops_swarms_no_longer_hosted(scripts: Scripts, keys: Keys) -> None:
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("old", ["c"]), ("shared", ["d"]), capacity=3)
    await host(scripts, keys, "w2", ("shared", ["d"]), capacity=3)
    coord = await leader(scripts, keys)
    ids = [f"t{i}" for i in range(3)]
    await store.submit([(task_spec(NOOP, id=t, capabilities=["c"]), None) for t in ids])
    assert await coord.dispatch_once() == 3

    # w1 restarts under the same id, now hosting "new" (and still "shared") instead of "old"
    before = await registry.host_swarms(
        "w1", {"host": "test"}, [swarm_spec("new", ["c"]), swarm_spec("shared", ["d"])]
    )
    assert before == {"new": "new", "shared": "active"}
    old = await registry.get("old")
    assert (old.status, old.host_workers, old.active) == ("interrupted", [], 0)
    assert (await registry.get("shared")).host_workers == ["w1", "w2"]
    tasks = [t for t in await store.get_many(ids) if t is not None]
    assert {(t.status, t.swarm, t.attempts) for t in tasks} == {("ready", "", 0)}
    assert await scripts.client.exists(keys.queue("old")) == 0
    workers = {w.id: w.swarms for w in await registry.workers()}
    assert workers["w1"] == "new,shared"

    # the tasks go where they can run
    assert await coord.dispatch_once() == 3
    assert {t.swarm for t in await store.get_many(ids) if t} == {"new"}


async def test_a_swarm_with_another_host_stays_active(scripts: Scripts, keys: Keys) -> None:
    registry = SwarmRegistry(scripts, keys)
    await host(scripts, keys, "w1", ("s", []), ("t", []))
    await host(scripts, keys, "w2", ("s", []))
    await registry.host_swarms("w1", {"host": "test"}, [swarm_spec("t")])
    s = await registry.get("s")
    assert (s.status, s.host_workers) == ("active", ["w2"])
