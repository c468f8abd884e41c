"""Leader election: one leader among racers, fencing, failover and hand-over across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import LeaderElection, SwarmCoordinator, current_leader
from multiswarm.errors import StaleEpoch
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.scripts import Scripts

from .helpers import reap, wait_sync

RACER = textwrap.dedent("""
    import asyncio, sys, time
    from multiswarm.config import Settings
    from multiswarm.connection import connect
    from multiswarm.coordinator import LeaderElection
    from multiswarm.keys import Keys
    from multiswarm.scripts import Scripts

    async def main(url, ns, start_at, name):
        client = connect(Settings(redis_url=url, namespace=ns))
        election = LeaderElection(Scripts(client), Keys(ns), lease_ms=30000, holder_id=name)
        await client.ping()
        while time.time() < start_at:
            pass  # spin: every racer fires within the same millisecond or so
        won = await election.try_acquire()
        print("WON" if won else "LOST", election.epoch)
        await client.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]))
""")


def test_exactly_one_leader_among_racing_processes(settings: Settings) -> None:
    for round_ in range(3):
        ns = f"{settings.namespace}r{round_}"
        start_at = time.time() + 2.0
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, settings.redis_url, ns, str(start_at), f"racer{i}"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(6)
        ]
        try:
            outs = [p.communicate(timeout=60)[0].split() for p in procs]
        finally:
            for p in procs:
                reap(p)
        winners = [o for o in outs if o[0] == "WON"]
        assert len(winners) == 1, outs
        assert winners[0][1] == "1"  # first election of the namespace: epoch 1


async def test_exactly_one_leader_among_racing_clients(settings: Settings) -> None:
    clients = [connect(settings) for _ in range(10)]
    try:
        for _ in range(20):
            elections = [
                LeaderElection(Scripts(c), Keys(settings.namespace), 30_000) for c in clients
            ]
            won = await asyncio.gather(*(e.try_acquire() for e in elections))
            assert sum(won) == 1
            winner = elections[won.index(True)]
            assert await winner.release()
    finally:
        for c in clients:
            await c.aclose()


async def test_epoch_only_grows_and_stale_epoch_is_refused(scripts: Scripts, keys: Keys) -> None:
    old = SwarmCoordinator(scripts, keys, lease_ms=30_000, holder_id="old")
    assert await old.election.try_acquire()
    assert old.election.epoch == 1
    assert await old.election.try_acquire()  # already ours: same term, same epoch
    assert old.election.epoch == 1

    # The old leader is paused past its lease: the key expires and a successor is elected.
    await scripts.client.delete(keys.leader)
    new = SwarmCoordinator(scripts, keys, lease_ms=30_000, holder_id="new")
    assert await new.election.try_acquire()
    assert new.election.epoch == 2

    # The paused leader wakes up still believing it leads: every leader-only write is refused.
    assert old.election.is_leader
    with pytest.raises(StaleEpoch):
        await old.dispatch_once()
    with pytest.raises(StaleEpoch):
        await old.reap_once()
    assert not await old.election.renew()
    assert not old.election.is_leader
    assert await new.dispatch_once() == 0  # the current epoch is accepted
    info, left = await current_leader(scripts, keys)
    assert info is not None and (info.holder, info.epoch) == ("new", 2) and left > 0


async def test_release_lets_a_standby_in_at_once(scripts: Scripts, keys: Keys) -> None:
    a = LeaderElection(scripts, keys, 30_000, holder_id="a")
    b = LeaderElection(scripts, keys, 30_000, holder_id="b")
    assert await a.try_acquire()
    assert not await b.try_acquire()
    assert not await b.release()  # not the holder: nothing released
    assert await a.release()
    assert await b.try_acquire()
    assert b.epoch == 2


def _leader_pid(settings: Settings) -> tuple[int, int, str] | None:
    async def read() -> tuple[int, int, str] | None:
        client = connect(settings)
        try:
            info, left = await current_leader(Scripts(client), Keys(settings.namespace))
            return (info.pid, left, info.holder) if info else None
        finally:
            await client.aclose()

    return asyncio.run(read())


def _server_ms(settings: Settings) -> int:
    async def read() -> int:
        client = connect(settings)
        try:
            sec, usec = await client.time()
            return int(sec) * 1000 + int(usec) // 1000
        finally:
            await client.aclose()

    return asyncio.run(read())


def _acquired_ms(settings: Settings) -> int:
    async def read() -> int:
        client = connect(settings)
        try:
            info, _ = await current_leader(Scripts(client), Keys(settings.namespace))
            assert info is not None
            return info.acquired_ms
        finally:
            await client.aclose()

    return asyncio.run(read())


@pytest.mark.slow
def test_failover_after_sigkill_within_lease_plus_renewal(
    settings: Settings, tmp_path: Path
) -> None:
    lease_ms = 1500
    group = ProcessGroup(settings.replace(lease_ms=lease_ms), tmp_path)
    try:
        for name in ("c1", "c2", "c3"):
            group.spawn(name, ["coordinator", "--id", name, "--lease-ms", str(lease_ms)])
        first = wait_sync(lambda: _leader_pid(settings), what="a leader")
        victim = next(c for c in group.children if c.pid == first[0])
        killed_at = _server_ms(settings)
        group.kill(victim)
        new = wait_sync(
            lambda: (lp := _leader_pid(settings)) and lp[2] != first[2] and lp, what="a new leader"
        )
        gap_ms = _acquired_ms(settings) - killed_at
        # The lease left at the kill must run out, then a standby's next try (every third of
        # the lease) wins; 1 s of slack for process scheduling on a loaded machine.
        assert gap_ms <= first[1] + lease_ms / 3 + 1000, (gap_ms, first)
        assert new[2] != first[2]
    finally:
        group.stop_all()


@pytest.mark.slow
def test_sigterm_hands_over_before_the_lease_would_expire(
    settings: Settings, tmp_path: Path
) -> None:
    lease_ms = 20_000
    group = ProcessGroup(settings.replace(lease_ms=lease_ms), tmp_path)
    try:
        for name in ("c1", "c2"):
            group.spawn(name, ["coordinator", "--id", name, "--lease-ms", str(lease_ms)])
        first = wait_sync(lambda: _leader_pid(settings), what="a leader")
        victim = next(c for c in group.children if c.pid == first[0])
        stopped_at = _server_ms(settings)
        victim.proc.terminate()
        assert victim.proc.wait(timeout=30) == 0  # clean exit
        wait_sync(
            lambda: (lp := _leader_pid(settings)) and lp[2] != first[2],
            timeout_s=15,
            what="hand-over",
        )
        # Taken over before the old lease would have expired: it was released, not waited out.
        assert _acquired_ms(settings) < stopped_at + first[1]
    finally:
        group.stop_all()


async def test_a_stop_during_an_acquire_gives_its_lease_back(
    settings: Settings, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The acquire ran in Redis but its reply was not read yet when the stop came (cancelled
    # in flight): before, the lease it took was left to run out, and a standby waited a lease.
    from multiswarm.coordinator_process import CoordinatorProcess
    from multiswarm.ops import leadership

    real = leadership.acquire_leadership
    ran = asyncio.Event()

    async def reply_never_read(*args: object, **kwargs: object) -> object:
        await real(*args, **kwargs)  # type: ignore[arg-type]
        ran.set()
        await asyncio.Event().wait()  # cancelled here, by the stop
        raise AssertionError("unreachable")

    monkeypatch.setattr(leadership, "acquire_leadership", reply_never_read)
    scripts = Scripts(connect(settings))
    coord = SwarmCoordinator(scripts, keys, lease_ms=60_000, holder_id="stopping")
    # an earlier term's epoch still held (its lease ran out unseen): the acquire takes a new one
    # (epoch 1, as the key is new), and a release with the old epoch would match nothing
    coord.election.epoch = 5
    stop = asyncio.Event()
    run = asyncio.create_task(CoordinatorProcess(coord).run(stop))
    try:
        await asyncio.wait_for(ran.wait(), 30)
        info, _ = await current_leader(scripts, keys)
        assert info is not None and info.holder == "stopping"  # taken, unknown to the process
        stop.set()
        await asyncio.wait_for(run, 30)
        assert (await current_leader(scripts, keys))[0] is None  # given back at the stop
        monkeypatch.setattr(leadership, "acquire_leadership", real)
        standby = LeaderElection(scripts, keys, 60_000, holder_id="standby")
        assert await standby.try_acquire()
    finally:
        stop.set()
        run.cancel()
        await scripts.client.aclose()
