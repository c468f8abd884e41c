"""Dispatch's in-call copy of the load ranking (decision 75): the same picks as a ZRANGE per task.

dispatch_tasks.lua keeps the first entries of each profile's load zset in the call and moves a
swarm within them as it takes tasks; an entry that goes past a partial copy leaves it, and a
tie drops the copy. These tests give one call several swarms with uneven loads (more than the
copy holds), so every path is taken, and compare each pick with least-loaded-then-id.
"""

from __future__ import annotations

import pytest

from multiswarm.keys import Keys
from multiswarm.messages import Task
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader
from .test_swarm_index import check_index

NOOP = "multiswarm.demo_tasks:noop"
SWARMS = ["a", "b", "c", "d", "e", "f", "g"]


async def _submit(store: TaskStore, ids: list[str]) -> None:
    await store.submit([(task_spec(NOOP, id=i), None) for i in ids])


def _least_loaded(active: dict[str, int], capacity: int, n: int) -> list[str]:
    picks = []
    for _ in range(n):
        open_ = [s for s in SWARMS if active[s] < capacity]
        if not open_:
            break
        sid = min(open_, key=lambda s: (active[s], s))
        active[sid] += 1
        picks.append(sid)
    return picks


@pytest.mark.parametrize(("done", "capacity"), [({"a": 3, "c": 2, "f": 1}, 20), ({"b": 3}, 4)])
async def test_one_call_picks_the_least_loaded_at_each_task(
    scripts: Scripts, keys: Keys, done: dict[str, int], capacity: int
) -> None:
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", *[(s, []) for s in SWARMS], capacity=capacity)
    coord = await leader(scripts, keys, "least_loaded")
    first = [f"p{i:03d}" for i in range(3 * len(SWARMS))]
    await _submit(store, first)
    assert await coord.dispatch_once() == len(first)  # 3 each
    active = dict.fromkeys(SWARMS, 3)
    # uneven loads: some swarms finish some of their tasks
    for sid, k in done.items():
        for c in await store.claim(sid, "w1", k):
            assert await store.complete(c.id, c.token, "w1", None) == "completed"
        active[sid] -= k
    more = [f"m{i:03d}" for i in range(30)]
    await _submit(store, more)
    expected = _least_loaded(active, capacity, len(more))
    assert await coord.dispatch_once() == len(expected)  # one call (at most 32 a call)
    tasks = await store.get_many(more)
    assert [t.swarm for t in tasks if isinstance(t, Task) and t.status == "assigned"] == expected
    entries = await check_index(scripts, keys)
    assert set(entries) == set(SWARMS)
