"""Coordinators share the partitions' leader leases (decision 45): one takes them all, two
split them evenly, and the survivor of a stop or a SIGKILL takes them all back with fencing
epochs that only grew."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from multiswarm import coordinator_process
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import current_leader
from multiswarm.errors import AlreadyExists
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.messages import LeaderInfo
from multiswarm.roles import coordinator_role
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import eventually, host, wait_sync

P = 4
NOOP = "multiswarm.demo_tasks:noop"
T = TypeVar("T")


async def leaders(scripts: Scripts, ns: str) -> list[tuple[LeaderInfo | None, int]]:
    """Each partition's leader record and the ms left on its lease."""
    return [await current_leader(scripts, k) for k in Keys.all(ns, P)]


async def holders(scripts: Scripts, ns: str) -> list[str | None]:
    return [info.holder if info else None for info, _ in await leaders(scripts, ns)]


async def epochs(scripts: Scripts, ns: str) -> list[int]:
    return [int(await scripts.client.get(k.epoch) or 0) for k in Keys.all(ns, P)]


def held_by(*expected: tuple[str, int]) -> Callable[[list[str | None]], bool]:
    """Every partition led, by exactly these holders with these counts."""
    return lambda hs: None not in hs and Counter(hs) == dict(expected)


async def server_ms(scripts: Scripts) -> int:
    sec, usec = await scripts.client.time()
    return int(sec) * 1000 + int(usec) // 1000


async def test_two_coordinators_split_the_partitions_and_a_stopped_ones_are_handed_over(
    settings: Settings, scripts: Scripts
) -> None:
    ns = settings.namespace
    lease_ms = 3000
    config = settings.replace(partitions=P, lease_ms=lease_ms)
    stops = {name: asyncio.Event() for name in ("ca", "cb")}
    runs: dict[str, asyncio.Future[None]] = {}

    async def seen(check: Callable[[list[str | None]], bool]) -> list[str | None]:
        hs = await holders(scripts, ns)
        return hs if check(hs) else []

    try:
        runs["ca"] = asyncio.ensure_future(
            coordinator_role(config, "least_loaded", "ca")(stops["ca"])
        )
        await eventually(lambda: seen(held_by(("ca", P))), timeout_s=20, what="ca leads all")
        first = await epochs(scripts, ns)

        runs["cb"] = asyncio.ensure_future(
            coordinator_role(config, "least_loaded", "cb")(stops["cb"])
        )
        split = await eventually(
            lambda: seen(held_by(("ca", 2), ("cb", 2))), timeout_s=30, what="an even split"
        )
        # ca gives away its highest-numbered partitions first and keeps the control slot
        assert split[0] == "ca" and split[P - 1] == "cb", split
        # balanced, it stays so: nobody takes a released partition back or a third one
        for _ in range(20):
            assert held_by(("ca", 2), ("cb", 2))(await holders(scripts, ns))
            await asyncio.sleep(lease_ms / 10_000)

        # a lease lost (deleted here, as if it ran out) goes back to the coordinator under its
        # quota: the other, at its quota, does not contend for it
        for k in (1, 3, 0, 2):
            owner = (await holders(scripts, ns))[k]
            old_epoch = (await epochs(scripts, ns))[k]
            await scripts.client.delete(Keys.all(ns, P)[k].leader)
            again = await eventually(
                lambda: seen(lambda hs: None not in hs),
                timeout_s=20,
                what=f"partition {k} led again",
            )
            assert again[k] == owner and held_by(("ca", 2), ("cb", 2))(again), (k, again)
            assert (await epochs(scripts, ns))[k] > old_epoch

        before = await leaders(scripts, ns)
        stopped_at = await server_ms(scripts)
        stops["ca"].set()
        await asyncio.wait_for(runs["ca"], 20)  # a clean stop: no error
        await eventually(lambda: seen(held_by(("cb", P))), timeout_s=20, what="cb leads all")
        after = await leaders(scripts, ns)
        for k, ((old, left), (new, _)) in enumerate(zip(before, after, strict=True)):
            assert old is not None and new is not None
            if old.holder == "ca":
                # released, not waited out: taken before the old lease would have expired
                assert new.acquired_ms < stopped_at + left, (k, old, new, left)
                assert new.epoch > old.epoch
        last = await epochs(scripts, ns)
        assert all(b >= a for a, b in zip(first, last, strict=True)), (first, last)
        assert not runs["cb"].done()
    finally:
        for stop in stops.values():
            stop.set()
        for run in runs.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run, 20)


def _read(settings: Settings, fn: Callable[[Scripts], Awaitable[T]]) -> T:
    async def read() -> T:
        client = connect(settings)
        try:
            return await fn(Scripts(client))
        finally:
            await client.aclose()

    return asyncio.run(read())


@pytest.mark.slow
def test_survivor_takes_a_killed_coordinators_partitions_within_lease_plus_renewal(
    settings: Settings, tmp_path: Path
) -> None:
    ns = settings.namespace
    lease_ms = 1500
    group = ProcessGroup(settings.replace(lease_ms=lease_ms, partitions=P), tmp_path)

    def seen(check: Callable[[list[str | None]], bool]) -> list[str | None]:
        hs = _read(settings, lambda s: holders(s, ns))
        return hs if check(hs) else []

    try:
        c1 = group.spawn("c1", ["coordinator", "--id", "c1", "--lease-ms", str(lease_ms)])
        wait_sync(lambda: seen(held_by(("c1", P))), what="c1 leads all")
        group.spawn("c2", ["coordinator", "--id", "c2", "--lease-ms", str(lease_ms)])
        wait_sync(lambda: seen(held_by(("c1", 2), ("c2", 2))), what="an even split")
        first = _read(settings, lambda s: epochs(s, ns))

        async def at_kill(s: Scripts) -> tuple[int, list[tuple[LeaderInfo | None, int]]]:
            return await server_ms(s), await leaders(s, ns)

        killed_at, before = _read(settings, at_kill)
        group.kill(c1)
        wait_sync(lambda: seen(held_by(("c2", P))), what="c2 leads all")
        after = _read(settings, lambda s: leaders(s, ns))
        for k, ((old, left), (new, _)) in enumerate(zip(before, after, strict=True)):
            assert old is not None and new is not None
            if old.holder == "c1":
                # c1's lease and membership run out within a lease, then c2 counts one
                # coordinator alive (every third of the lease) and tries at once: the bound of
                # one lease, as before partitions; 1 s of slack for a loaded machine
                gap_ms = new.acquired_ms - killed_at
                assert gap_ms <= lease_ms + lease_ms / 3 + 1000, (k, gap_ms, left)
                assert new.epoch > old.epoch
        last = _read(settings, lambda s: epochs(s, ns))
        assert all(b >= a for a, b in zip(first, last, strict=True)), (first, last)
    finally:
        codes = group.stop_all()
    assert codes["c2"] == 0, codes


async def test_a_second_process_with_the_same_id_is_refused_and_the_first_leads_on(
    settings: Settings, scripts: Scripts
) -> None:
    ns = settings.namespace
    config = settings.replace(partitions=P, lease_ms=3000)
    stop = asyncio.Event()
    first = asyncio.ensure_future(coordinator_role(config, "least_loaded", "ca")(stop))
    try:

        async def all_led() -> bool:
            return held_by(("ca", P))(await holders(scripts, ns))

        await eventually(all_led, timeout_s=20, what="ca leads all")
        led = await leaders(scripts, ns)
        with pytest.raises(AlreadyExists):
            await asyncio.wait_for(coordinator_role(config, "least_loaded", "ca")(stop), 20)
        # the first keeps every lease (same terms) and its membership
        assert [(i.holder, i.epoch) for i, _ in await leaders(scripts, ns) if i] == [
            (i.holder, i.epoch) for i, _ in led if i
        ]
        members = await scripts.client.zrange(Keys(ns).coordinators, 0, -1)
        assert members == [b"ca"]
        assert not first.done()
    finally:
        stop.set()
        await asyncio.wait_for(first, 20)


async def test_each_partitions_leader_is_woken_by_a_submission_to_its_partition(
    settings: Settings, scripts: Scripts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no safety-net round within the test: only the wake-up makes the leader dispatch
    monkeypatch.setattr(coordinator_process, "DISPATCH_SAFETY_S", 120.0)
    ns = settings.namespace
    parts = Keys.all(ns, P)
    stop = asyncio.Event()
    role = asyncio.ensure_future(
        coordinator_role(settings.replace(partitions=P, lease_ms=30_000), "least_loaded", "ca")(
            stop
        )
    )
    try:

        async def all_led() -> bool:
            return held_by(("ca", P))(await holders(scripts, ns))

        await eventually(all_led, timeout_s=20, what="ca leads all")
        for k, keys in enumerate(parts):
            await host(scripts, keys, f"w{k}", (f"s{k}", []))
        await asyncio.sleep(0.5)  # the rounds the hosting woke are over: the leaders idle
        for k, keys in enumerate(parts):
            await TaskStore(scripts, keys).submit([(task_spec(NOOP, id=f"t{k}"), None)])

        async def assigned() -> list[str]:
            got = [(await TaskStore(scripts, keys).get(f"t{k}")) for k, keys in enumerate(parts)]
            return [t.status for t in got] if all(t.status == "assigned" for t in got) else []

        await eventually(assigned, timeout_s=20, what="every partition's task assigned")
    finally:
        stop.set()
        await asyncio.wait_for(role, 20)
