"""One worker process serving swarms placed in several coordination partitions (decision 44):
:func:`multiswarm.worker_partitions.run_workers` on a real Redis, with one in-process leader per
partition, and the pure helpers it uses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.coordinator_process import run_coordinator
from multiswarm.envelopes import check_channel
from multiswarm.errors import InvalidIdError, WorkerFailed
from multiswarm.keys import Keys
from multiswarm.placement import REGION_BYTES
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from multiswarm.worker import Worker
from multiswarm.worker_partitions import partition_worker_id, run_workers, split_pool
from tests.integration.helpers import eventually, running, stream_entries

P = 3
NOOP = "multiswarm.demo_tasks:noop"


def test_partition_worker_ids() -> None:
    assert partition_worker_id("w", 0, 1) == "w"  # one partition: the id of before
    assert [partition_worker_id("w", k, 3) for k in range(3)] == ["w.p0", "w.p1", "w.p2"]
    with pytest.raises(InvalidIdError):
        partition_worker_id("w" * 127, 1, 3)


def test_pool_split_by_agents_keeps_each_agents_share() -> None:
    pool = 28 * 1024 * 1024
    parts = split_pool(pool, [2, 1, 1])
    assert all(p % REGION_BYTES == 0 and p > 0 for p in parts)
    assert sum(parts) <= pool and parts[0] == 2 * parts[1] == 2 * parts[2]
    assert split_pool(REGION_BYTES, [1, 1]) == [REGION_BYTES, REGION_BYTES]  # one region each


def test_partition_wake_up_channels_are_valid_channels() -> None:
    keys = Keys("ns", 2, 3)
    assert check_channel(keys, keys.ch_tasks) == "ns:tasks:p2"
    assert check_channel(keys, keys.ch_coordination) == "ns:coordination:p2"
    for bad in ("ns:tasks:p0", "ns:reply:tasks:p1", "ns:tasks:px", "ns:other:p1"):
        with pytest.raises(InvalidIdError):
            check_channel(keys, bad)


@contextlib.asynccontextmanager
async def leaders(settings: Settings) -> AsyncIterator[Scripts]:
    """One coordinator per partition in this event loop (each leads its own partition)."""
    scripts = Scripts(connect(settings), settings.reconnect_timeout_s)
    stop = asyncio.Event()
    runs = [
        asyncio.create_task(
            run_coordinator(
                SwarmCoordinator(
                    scripts, Keys(settings.namespace, k, P), lease_ms=5000, holder_id=f"c{k}"
                ),
                stop,
            )
        )
        for k in range(P)
    ]
    try:
        yield scripts
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 30)
        await scripts.client.aclose()


def served(settings: Settings, specs: list[Any], stop: asyncio.Event, **options: Any) -> Any:
    return asyncio.create_task(run_workers(settings, specs, stop, **options))


async def test_one_process_serves_swarms_of_three_partitions(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(partitions=P)
    ns = settings.namespace
    specs = [swarm_spec(f"s{i}", ["x"], agents=1) for i in range(4)]
    async with leaders(settings) as scripts:
        stop = asyncio.Event()
        run = served(settings, specs, stop, worker_id="w", grace_s=2.0)
        try:
            # alike swarms spread evenly: s0..s3 in partitions 0, 1, 2, 0
            expected = {"s0": 0, "s1": 1, "s2": 2, "s3": 0}
            for sid, k in expected.items():
                registry = SwarmRegistry(scripts, Keys(ns, k, P))

                async def hosted(
                    r: SwarmRegistry = registry, s: str = sid, w: str = f"w.p{k}"
                ) -> bool:
                    with contextlib.suppress(Exception):
                        return (await r.get(s)).hosts == w
                    return False

                await eventually(hosted, timeout_s=60, what=f"{sid} hosted in partition {k}")
            for k in range(P):  # each partition's registry knows its own worker and swarms only
                workers = await scripts.client.hkeys(Keys(ns, k, P).workers)
                assert workers == [f"w.p{k}".encode()]
                swarms = await scripts.client.hkeys(Keys(ns, k, P).swarms)
                assert sorted(swarms) == sorted(s.encode() for s, at in expected.items() if at == k)
            stores = [TaskStore(scripts, Keys(ns, k, P)) for k in range(P)]
            n = 6
            for k, store in enumerate(stores):
                await store.submit(
                    [(task_spec(NOOP, id=f"p{k}t{i}", capabilities=["x"]), i) for i in range(n)]
                )
            for k, store in enumerate(stores):

                async def done(st: TaskStore = store) -> bool:
                    return (await st.counts())["completed"] == n

                await eventually(done, timeout_s=60, what=f"partition {k} completed")
                recorded = [
                    f[b"task"]
                    for _, f in await stream_entries(scripts.client, Keys(ns, k, P).completions)
                ]
                assert sorted(recorded) == sorted(f"p{k}t{i}".encode() for i in range(n))
                for i in range(n):
                    t = await store.get(f"p{k}t{i}")
                    assert (t.status, t.attempts, t.worker) == ("completed", 1, f"w.p{k}")
                    assert expected[t.swarm] == k
        finally:
            stop.set()
            await asyncio.wait_for(run, 60)
        for k in range(P):  # every partition's worker left cleanly
            assert await scripts.client.hkeys(Keys(ns, k, P).workers) == []


async def test_a_failing_partition_worker_stops_the_others(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.replace(partitions=P)
    ns = settings.namespace
    original = Worker._claim_safety_net

    def safety_net(self: Worker, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        async def boom() -> None:
            await asyncio.sleep(1.0)
            raise RuntimeError("boom")

        return boom() if self.keys.partition == 1 else original(self, stop)

    monkeypatch.setattr(Worker, "_claim_safety_net", safety_net)
    specs = [swarm_spec(f"s{i}", ["x"], agents=1) for i in range(3)]
    scripts = Scripts(connect(settings), settings.reconnect_timeout_s)
    stop = asyncio.Event()
    try:
        with pytest.raises(WorkerFailed) as failed:
            await asyncio.wait_for(run_workers(settings, specs, stop, worker_id="w"), 90)
        assert "w.p1" in str(failed.value) and "boom" in str(failed.value)
        assert not stop.is_set()  # the others stopped without the caller's stop
        for k in range(P):
            assert await scripts.client.hkeys(Keys(ns, k, P).workers) == []
    finally:
        await scripts.client.aclose()


async def test_one_partition_is_one_worker_of_the_given_id(settings: Settings) -> None:
    ns = settings.namespace
    scripts = Scripts(connect(settings), settings.reconnect_timeout_s)
    stop = asyncio.Event()
    run = served(settings, [swarm_spec("s", ["x"], agents=1)], stop, worker_id="w1")
    try:

        async def registered() -> bool:
            return await scripts.client.hkeys(Keys(ns).workers) == [b"w1"]

        await eventually(registered, timeout_s=60, what="w1 registered")
        # nothing placed: with one partition the directory stays empty
        assert await scripts.client.exists(Keys(ns).swarm_partitions) == 0
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)
        await scripts.client.aclose()


#: A worker process as ``roles.serve`` runs one (signals set the stop event), serving swarms of
#: three partitions through run_workers (roles.worker_role will call it the same way).
SERVE = """
from multiswarm.config import from_env
from multiswarm.registry import swarm_spec
from multiswarm.roles import agreed, serve
from multiswarm.worker_partitions import run_workers

async def role(stop):
    specs = [swarm_spec(f"s{i}", ["x"], agents=2) for i in range(3)]
    await run_workers(await agreed(from_env()), specs, stop, worker_id="w", grace_s=2.0)

serve(role, grace_s=2.0)
"""


async def test_sigterm_stops_every_partition_worker_of_the_process(settings: Settings) -> None:
    ns = settings.namespace
    env = {
        **os.environ,
        "MULTISWARM_REDIS_URL": settings.redis_url,
        "MULTISWARM_NAMESPACE": ns,
        "MULTISWARM_PARTITIONS": str(P),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    proc = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stderr=subprocess.PIPE)
    scripts = Scripts(connect(settings), settings.reconnect_timeout_s)
    try:

        async def all_registered() -> bool:
            got = [await scripts.client.hkeys(Keys(ns, k, P).workers) for k in range(P)]
            return got == [[f"w.p{k}".encode()] for k in range(P)]

        await eventually(all_registered, timeout_s=60, what="a worker in every partition")
        # A worker registers while its agents start (decision 68), so wait for the processes:
        # two agents per swarm.
        await eventually(
            lambda: asyncio.to_thread(lambda: len(children(proc.pid)) >= 6),
            timeout_s=60,
            what="two agent processes per swarm",
        )
        agents = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, err.decode()
        for k in range(P):
            assert await scripts.client.hkeys(Keys(ns, k, P).workers) == []
        await eventually(
            lambda: asyncio.to_thread(none_alive, agents), timeout_s=10, what="agents gone"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()  # left open when an assertion failed, it warns in a later test
        await scripts.client.aclose()


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def none_alive(pids: list[int]) -> bool:
    """True when none of ``pids`` runs (gone, or a zombie)."""
    return not any(running(pid) for pid in pids)
