"""Durability at failover (issue 12): with MULTISWARM_WAIT_REPLICAS, submissions, results, leases
and elections are acknowledged by replicas before the caller hears success; too few is a typed
error; a failover loses no acknowledged task and the fencing epoch only grows."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest

from multiswarm import Multiswarm
from multiswarm.config import Settings, from_env
from multiswarm.coordinator import LeaderElection
from multiswarm.errors import ConfigError, ReplicaAckError
from multiswarm.redis_topologies import SentinelGroup
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinel() -> Iterator[SentinelGroup]:
    with SentinelGroup(replicas=1) as group:
        yield group


def durable(
    sentinel: SentinelGroup, namespace: str, wait_timeout_ms: int | None = None, **env: str
) -> Settings:
    """Settings of namespace ``namespace`` on the group, one replica to acknowledge each write."""
    base = {
        "MULTISWARM_REDIS_URL": sentinel.url,
        "MULTISWARM_NAMESPACE": namespace,
        "MULTISWARM_WAIT_REPLICAS": "1",
    }
    if wait_timeout_ms is not None:
        base["MULTISWARM_WAIT_TIMEOUT_MS"] = str(wait_timeout_ms)
    return from_env({**base, **env})


async def test_acknowledged_writes_survive_a_failover(sentinel: SentinelGroup) -> None:
    settings = durable(sentinel, "dur", wait_timeout_ms=2000)
    ms = await Multiswarm.connect(settings=settings)
    try:
        ids = [await ms.distribute_task("myapp.tasks:parse", {"i": i}) for i in range(50)]
        election = LeaderElection(ms.scripts, ms.keys, lease_ms=600_000)
        assert await election.try_acquire()
        epoch_before = election.epoch
    finally:
        await ms.close()
    old_master = sentinel.master.port
    sentinel.master.kill()  # SIGKILL: whatever was only on the master is gone
    deadline = time.monotonic() + 60
    while sentinel.current_master_port() == old_master:
        assert time.monotonic() < deadline, "no failover within 60 s"
        await asyncio.sleep(0.2)
    # the promoted replica has no replica of its own: read and elect without WAIT
    after = settings.replace(reconnect_timeout_s=30.0, wait_replicas=0)
    ms = await Multiswarm.connect(settings=after)
    try:
        # every acknowledged submission is on the new master
        assert [t.id for t in await ms.tasks.get_many(ids) if t is not None] == ids
        # the fencing epoch did not go backwards: the next election is above the old one
        await ms.client.delete(ms.keys.leader)  # the old leader's lease: let a new one win now
        successor = LeaderElection(ms.scripts, ms.keys, lease_ms=600_000)
        assert await successor.try_acquire()
        assert successor.epoch > epoch_before
    finally:
        await ms.close()


async def test_too_few_replicas_is_a_typed_error(sentinel: SentinelGroup) -> None:
    settings = durable(sentinel, "dur2", wait_timeout_ms=300)
    (replica,) = sentinel.replicas
    assert replica.proc is not None
    # a short window: the shortfall is waited for again until it closes
    ms = await Multiswarm.connect(settings=settings.replace(reconnect_timeout_s=1.0))
    os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
    try:
        with pytest.raises(ReplicaAckError, match="0 of 1 replicas acknowledged within 300 ms"):
            await ms.distribute_task("myapp.tasks:parse", {})
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
        await ms.close()


async def test_a_replica_back_within_the_window_completes_the_call(
    sentinel: SentinelGroup, caplog: pytest.LogCaptureFixture
) -> None:
    settings = durable(sentinel, "dur3", wait_timeout_ms=200)
    (replica,) = sentinel.replicas
    assert replica.proc is not None
    ms = await Multiswarm.connect(settings=settings)
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="multiswarm.scripts"):
            call = asyncio.ensure_future(ms.distribute_task("myapp.tasks:parse", {}))

            async def waiting_again() -> bool:
                return "waiting again" in caplog.text

            await eventually(waiting_again, 30, what="a second WAIT")
        os.kill(replica.proc.pid, signal.SIGCONT)
        task_id = await asyncio.wait_for(call, 30)
        assert [t.id for t in await ms.tasks.get_many([task_id]) if t is not None] == [task_id]
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
        await ms.close()


async def test_wait_aof_falls_back_to_wait_on_a_server_without_it(
    sentinel: SentinelGroup, caplog: pytest.LogCaptureFixture
) -> None:
    settings = durable(sentinel, "dur4", MULTISWARM_WAIT_AOF="1")
    ms = await Multiswarm.connect(settings=settings)
    try:
        version = str((await ms.client.info("server"))["redis_version"])
        if tuple(int(p) for p in version.split(".")[:2]) >= (7, 2):
            pytest.skip(f"Redis {version} has WAITAOF")  # and these replicas no AOF to fsync
        with caplog.at_level(logging.WARNING, logger="multiswarm.scripts"):
            for i in range(3):
                await ms.distribute_task("myapp.tasks:parse", {"i": i})
        # told once, then every write waited with WAIT and succeeded
        assert caplog.text.count("has no WAITAOF") == 1
    finally:
        await ms.close()


def test_wait_replicas_refused_on_a_cluster_url() -> None:
    with pytest.raises(ConfigError, match="not supported on Redis Cluster"):
        from_env(
            {"MULTISWARM_REDIS_URL": "redis+cluster://h:7000", "MULTISWARM_WAIT_REPLICAS": "1"}
        )


async def test_a_worker_s_calls_go_on_while_a_replica_is_stopped(sentinel: SentinelGroup) -> None:
    """A claim the replicas did not acknowledge raised, and the tasks it leased were dropped:
    they expired unrun, an attempt each; a renewal waited the whole reconnect window on the
    replica while every other lease of the worker ran out (found in review). Now the claim's
    tasks and the outcomes' replies are used all the same, and renewals do not wait."""
    from multiswarm.tasks import TaskStore, task_spec
    from tests.integration.helpers import host, leader

    settings = durable(sentinel, "dur5", wait_timeout_ms=300)
    (replica,) = sentinel.replicas
    assert replica.proc is not None
    ms = await Multiswarm.connect(settings=settings.replace(reconnect_timeout_s=10.0))
    try:
        await host(ms.scripts, ms.keys, "w1", ("s1", []))
        coord = await leader(ms.scripts, ms.keys)
        store = TaskStore(ms.scripts, ms.keys)
        await store.submit([(task_spec("myapp.tasks:parse", id="t", lease_ms=3000), None)])
        assert await coord.dispatch_once() == 1
        os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
        [claim] = await store.claim("s1", "w1", 1)
        assert claim.id == "t"
        # the claim did not wait out the 10 s window for the replica: its 3 s lease is still
        # live when the worker hears of it (else it ran out unrenewed, an attempt lost)
        seconds, micros = await ms.client.time()
        assert (await store.get("t")).lease_until > seconds * 1000 + micros // 1000
        assert await store.extend("w1", {claim.id: claim.token}) == []
        assert await store.complete(claim.id, claim.token, "w1", {"ok": 1}) == "completed"
        task = await store.get("t")
        assert (task.status, task.attempts) == ("completed", 1)
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
        await ms.close()
