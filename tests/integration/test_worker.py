"""Worker processes on a real Redis: crashes, clean shutdown, long CPU-bound handlers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import eventually, hash_value, stream_entries

pytestmark = pytest.mark.slow

SLEEP = "multiswarm.demo_tasks:sleep_then_return"


def _system(settings: Settings, tmp_path: Path, workers: list[tuple[str, str]]) -> ProcessGroup:
    """Registry + coordinator + the given (name, --swarm spec) workers, short timeouts."""
    group = ProcessGroup(settings.replace(heartbeat_timeout_ms=1500, lease_ms=2000), tmp_path)
    group.spawn("registry", ["registry"])
    group.spawn("coordinator", ["coordinator", "--id", "coord"])
    for name, swarm in workers:
        group.spawn(name, ["worker", "--id", name, "--swarm", swarm])
    return group


async def _store(settings: Settings) -> TaskStore:
    return TaskStore(Scripts(connect(settings)), Keys(settings.namespace))


async def _all_completed(store: TaskStore, n: int) -> bool:
    return (await store.counts())["completed"] == n


async def test_sigkilled_worker_loses_no_task_and_completes_none_twice(
    settings: Settings, tmp_path: Path
) -> None:
    # w2 starts once w1 runs tasks: started together, the first worker up may claim all 12
    # (its agents' slots hold them) and leave w1 nothing to be killed with
    group = _system(settings, tmp_path, [("w1", "s:work:2")])
    store = await _store(settings)
    try:
        n = 12
        await store.submit(
            [
                (
                    task_spec(
                        SLEEP, id=f"t{i}", capabilities=["work"], lease_ms=3000, backoff_ms=100
                    ),
                    {"seconds": 0.5},
                )
                for i in range(n)
            ]
        )

        async def w1_busy() -> bool:
            return any(t.worker == "w1" for t in await store.list("running"))

        await eventually(w1_busy, what="w1 running a task")
        group.spawn("w2", ["worker", "--id", "w2", "--swarm", "s:work:2"])
        group.kill(next(c for c in group.children if c.name == "w1"))

        await eventually(lambda: _all_completed(store, n), timeout_s=60, what="all completed")
        completions = await stream_entries(store.client, Keys(settings.namespace).completions)
        recorded = [f[b"task"] for _, f in completions]
        assert sorted(recorded) == sorted(f"t{i}".encode() for i in range(n))  # once each
        stats = await store.stats()
        assert stats["executions"] > n  # the killed attempts ran again
        for i in range(n):
            assert (await store.result(f"t{i}"))["task"] == f"t{i}"
    finally:
        await store.client.aclose()
        group.stop_all()


async def test_heartbeats_continue_during_minutes_of_cpu(
    settings: Settings, tmp_path: Path
) -> None:
    """A handler spinning the CPU for 4x the heartbeat timeout and 3x its lease: the worker is
    never declared dead and the lease never lapses, so the task runs exactly once."""
    group = _system(settings, tmp_path, [("w1", "s:cpu:1")])
    store = await _store(settings)
    try:
        await store.submit(
            [
                (
                    task_spec(
                        "multiswarm.demo_tasks:burn_cpu",
                        id="burn",
                        capabilities=["cpu"],
                        lease_ms=2000,
                    ),
                    {"seconds": 6},
                )
            ]
        )
        await eventually(lambda: _all_completed(store, 1), timeout_s=60, what="completion")
        t = await store.get("burn")
        assert (t.attempts, t.worker) == (1, "w1")
        stats = await store.stats()
        assert stats["executions"] == 1 and stats.get("retries", 0) == 0
        workers = await store.client.hkeys(Keys(settings.namespace).workers)
        assert workers == [b"w1"]
        # the node's memory pool is reported with the beats (28 MiB by default)
        from multiswarm.messages import decode_worker

        record = decode_worker(
            await hash_value(store.client, Keys(settings.namespace).workers, "w1")
        )
        assert record.mem_total == 28 * 1024 * 1024 and record.agents == 1
    finally:
        await store.client.aclose()
        group.stop_all()


async def test_sigterm_hands_back_running_tasks(settings: Settings, tmp_path: Path) -> None:
    group = _system(settings, tmp_path, [("w1", "s:slow:1")])
    store = await _store(settings)
    try:
        await store.submit([(task_spec(SLEEP, id="long", capabilities=["slow"]), {"seconds": 30})])

        async def running() -> bool:
            return (await store.get("long")).status == "running"

        await eventually(running, what="long task running")
        w1 = next(c for c in group.children if c.name == "w1")
        w1.proc.terminate()
        assert await asyncio.to_thread(w1.proc.wait, 60) == 0
        t = await store.get("long")
        # worker grace (10 s) is shorter than the task: it was handed back, attempt not counted
        assert (t.status, t.attempts, t.error) == ("ready", 0, "")
        # no host is left for its swarm, and the leader says so; or the leader, woken by the
        # hand-back in the same Redis turn (decision 94), assigned it to the leaving worker's
        # swarm again before the worker left, and the leave put it back (the swarm interrupted)
        assert t.reason in (
            "released by w1",
            "no active swarm has capabilities [slow]",
            "swarm s interrupted",
        )
        assert await store.client.hkeys(Keys(settings.namespace).workers) == []
    finally:
        await store.client.aclose()
        group.stop_all()


async def test_unregistered_handlers_wait_and_failing_ones_die_without_crashes(
    settings: Settings, tmp_path: Path
) -> None:
    group = _system(settings, tmp_path, [("w1", "s::1")])
    store = await _store(settings)
    try:
        await store.submit(
            [
                (task_spec("os:system", id="hostile", max_attempts=3), "echo pwned"),
                (task_spec("multiswarm.nope:fn", id="missing", max_attempts=3), None),
                (
                    task_spec(
                        "multiswarm.demo_tasks:fail_always",
                        id="raises",
                        max_attempts=2,
                        backoff_ms=50,
                    ),
                    None,
                ),
                (task_spec("multiswarm.demo_tasks:noop", id="fine"), {"ok": True}),
            ]
        )

        async def settled() -> bool:
            c = await store.counts()
            waiting = [await store.get(t) for t in ("hostile", "missing")]
            return (
                c["dead"] == 1
                and c["completed"] == 1
                and all("may run handler" in t.reason for t in waiting)
            )

        await eventually(settled, timeout_s=60, what="all settled")
        # no swarm registers them: they wait, never run (nothing imported), no attempt burnt
        for tid, name in (("hostile", "os:system"), ("missing", "multiswarm.nope:fn")):
            t = await store.get(tid)
            assert (t.status, t.attempts, t.error) == ("ready", 0, ""), t
            assert f"may run handler {name} (s do not register it" in t.reason
        raises = await store.get("raises")
        assert raises.attempts == 2 and "failing on purpose" in raises.error
        assert await store.result("fine") == {"ok": True}
        assert all(c.alive() for c in group.children)  # nobody crashed
    finally:
        await store.client.aclose()
        group.stop_all()
