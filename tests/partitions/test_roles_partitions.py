"""The registry and state-manager roles serve every partition: a dead worker of partition k > 0
is reaped, a swarm of partition k > 0 is snapshotted, and one partition's loop failing stops
the others and the role instead of leaving that partition unserved."""

from __future__ import annotations

import asyncio

import pytest

from multiswarm.config import Settings
from multiswarm.keys import Keys
from multiswarm.partition_leaders import PartitionRun, run_partitions
from multiswarm.registry import SwarmRegistry
from multiswarm.roles import registry_role, state_manager_role
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from tests.integration.helpers import eventually, host

P = 4


async def test_registry_role_reaps_a_dead_worker_of_a_later_partition(
    settings: Settings, scripts: Scripts
) -> None:
    k2 = Keys(settings.namespace, 2, P)
    k1 = Keys(settings.namespace, 1, P)
    await host(scripts, k2, "w2", ("s2", []))  # one beat, then silence: dead after 600 ms
    await host(scripts, k1, "w1", ("s1", []))
    stop = asyncio.Event()
    role = asyncio.ensure_future(
        registry_role(settings.replace(partitions=P, heartbeat_timeout_ms=600))(stop)
    )

    async def gone() -> bool:
        ids = [w.id for k in (k1, k2) for w in await SwarmRegistry(scripts, k).workers()]
        return not ids

    try:
        await eventually(gone, timeout_s=20, what="both dead workers reaped")
        swarm = await SwarmRegistry(scripts, k2).get("s2")
        assert swarm.status == "interrupted"  # no live host left
        assert not role.done()
    finally:
        stop.set()
        await asyncio.wait_for(role, 20)


async def test_state_manager_role_snapshots_swarms_of_every_partition(
    settings: Settings, scripts: Scripts
) -> None:
    swarms = {k: f"s{k}" for k in range(P)}
    for k, sid in swarms.items():
        keys = Keys(settings.namespace, k, P)
        await scripts.client.sadd(keys.swarm_status("active"), sid)
        await SwarmStateManager(scripts, keys).save_state(sid, {"k": k})
    stop = asyncio.Event()
    role = asyncio.ensure_future(
        state_manager_role(settings.replace(partitions=P, snapshot_interval_ms=60_000))(stop)
    )
    manager = SwarmStateManager(scripts, Keys(settings.namespace, 0, P))

    async def snapshotted() -> bool:
        return all([await manager.list_snapshots(sid) for sid in swarms.values()])

    try:
        await eventually(snapshotted, timeout_s=20, what="a snapshot of each partition's swarm")
        for k, sid in swarms.items():
            point = await manager.load_snapshot(sid)
            assert point.data == {"k": k}
    finally:
        stop.set()
        await asyncio.wait_for(role, 20)


async def test_one_partition_failing_stops_the_others_and_raises() -> None:
    stopped: list[int] = []

    def serving(k: int) -> PartitionRun:
        async def run(stop: asyncio.Event) -> None:
            await stop.wait()
            stopped.append(k)

        return run

    async def failing(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("partition 2 broke")

    runs = [serving(0), serving(1), failing, serving(3)]
    outer = asyncio.Event()  # never set: the failure alone ends the role
    with pytest.raises(RuntimeError, match="partition 2 broke"):
        await asyncio.wait_for(run_partitions(runs, outer), 10)
    assert sorted(stopped) == [0, 1, 3]


async def test_partitions_stop_together_on_stop_after_leaving() -> None:
    order: list[str] = []

    async def run(stop: asyncio.Event) -> None:
        await stop.wait()
        order.append("stopped")

    async def leaving() -> None:
        order.append("left")

    stop = asyncio.Event()
    task = asyncio.create_task(run_partitions([run, run], stop, leaving=leaving))
    await asyncio.sleep(0.05)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert order == ["left", "stopped", "stopped"]
