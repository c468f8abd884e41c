"""After the epoch counter rolls back (Sentinel failover to a lagging replica, AOF ``everysec``
losing the last second), a new leader can be elected with the epoch the old one still holds.

Fencing compared the epoch only, so the deposed leader's writes passed the check while the new
leader also wrote. Now leader-only scripts also require the leader key to name the caller (holder
id, process instance and epoch), so the deposed leader is refused even at an equal epoch.
"""

from __future__ import annotations

import pytest

from multiswarm.coordinator import SwarmCoordinator
from multiswarm.errors import StaleEpoch
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import host

NOOP = "multiswarm.demo_tasks:noop"


async def test_equal_epoch_after_rollback_is_fenced_by_holder(scripts: Scripts, keys: Keys) -> None:
    old = SwarmCoordinator(scripts, keys, lease_ms=30_000, holder_id="old")
    assert await old.election.try_acquire() and old.election.epoch == 1
    await host(scripts, keys, "w1", ("s", []))

    # The write of epoch 1 is lost (the leader key with it): what a replica promoted before it
    # received them, or an AOF fsynced every second, gives back after the old leader acquired.
    await scripts.client.delete(keys.leader)
    await scripts.client.set(keys.epoch, 0)
    new = SwarmCoordinator(scripts, keys, lease_ms=30_000, holder_id="new")
    assert await new.election.try_acquire() and new.election.epoch == 1  # the same epoch

    await TaskStore(scripts, keys).submit([(task_spec(NOOP, id="t"), None)])
    assert old.election.is_leader  # paused, it still believes it leads
    with pytest.raises(StaleEpoch):
        await old.dispatch_once()
    with pytest.raises(StaleEpoch):
        await old.reap_once()
    assert await new.dispatch_once() == 1
    assert (await TaskStore(scripts, keys).get("t")).epoch == 1


async def test_no_leader_lease_no_leader_writes(scripts: Scripts, keys: Keys) -> None:
    old = SwarmCoordinator(scripts, keys, lease_ms=30_000, holder_id="old")
    assert await old.election.try_acquire()
    await scripts.client.delete(keys.leader)  # lease gone (expired, or lost with the data)
    with pytest.raises(StaleEpoch):
        await old.dispatch_once()
