"""Head-of-line blocking in dispatch: tasks nobody can place must not starve the ones behind.

The leader used to examine only the first 4 x batch ready tasks; 800 tasks needing a capability no
swarm has (or whose capable swarms are all full) filled that window forever, so placeable tasks
submitted after them, even high-priority ones, were never assigned. Now unplaceable tasks are
parked per capability set (with their reason) and a placeable task is assigned in the same round.
"""

from __future__ import annotations

from multiswarm.keys import Keys
from multiswarm.messages import Task
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"
BLOCKED = 800


async def _submit(
    store: TaskStore, prefix: str, n: int, caps: list[str], priority: str = "normal"
) -> list[str]:
    specs = [
        task_spec(NOOP, id=f"{prefix}{i:04d}", capabilities=caps, priority=priority)
        for i in range(n)
    ]
    await store.submit([(s, None) for s in specs])
    return [s.id for s in specs]


async def _tasks(store: TaskStore, ids: list[str]) -> list[Task]:
    return [t for t in await store.get_many(ids) if isinstance(t, Task)]


async def test_missing_capability_does_not_starve_later_tasks(scripts: Scripts, keys: Keys) -> None:
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("cpu", ["parse"]))
    coord = await leader(scripts, keys)  # batch 200: the old window was 800 tasks
    blocked = await _submit(store, "gpu", BLOCKED, ["gpu"])
    placeable = await _submit(store, "p", 10, ["parse"])
    assert await coord.dispatch_once() == 10
    assert {t.status for t in await _tasks(store, placeable)} == {"assigned"}
    stuck = await _tasks(store, blocked)
    assert len(stuck) == BLOCKED
    assert {(t.status, t.reason) for t in stuck} == {
        ("ready", "no active swarm has capabilities [gpu]")
    }
    # once a capable swarm appears, the parked tasks are dispatched
    await host(scripts, keys, "w2", ("gpus", ["gpu"]), capacity=BLOCKED)
    assert await coord.dispatch_once() == 200
    while await coord.dispatch_once():
        pass
    assert {t.status for t in await _tasks(store, blocked)} == {"assigned"}


async def test_full_swarms_do_not_starve_a_later_high_priority_task(
    scripts: Scripts, keys: Keys
) -> None:
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("small", ["slow"]), capacity=2)
    await host(scripts, keys, "w2", ("other", ["fast"]), capacity=100)
    coord = await leader(scripts, keys, batch_size=10)  # window of 40 tasks per call
    slow = await _submit(store, "s", BLOCKED, ["slow"])
    urgent = await _submit(store, "u", 5, ["fast"], priority="high")
    late = await _submit(store, "l", 3, ["fast"], priority="low")
    # one round (batch 10): two slow tasks fill "small", the 8 placeable ones behind are assigned
    assert await coord.dispatch_once() == 10
    assert {t.status for t in await _tasks(store, urgent + late)} == {"assigned"}
    waiting = [t for t in await _tasks(store, slow) if t.status == "ready"]
    assert len(waiting) == BLOCKED - 2
    assert {t.reason for t in waiting} == {"all capable swarms at capacity"}
    # a freed slot is used by the oldest waiting slow task at the next round
    (first,) = await store.claim("small", "w1", 1)
    assert await store.complete(first.id, first.token, "w1", None) == "completed"
    assert await coord.dispatch_once() == 1
    assert (await store.get(slow[2])).status == "assigned"
