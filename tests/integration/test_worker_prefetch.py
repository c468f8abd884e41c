"""The claim loop's prefetch window (multiswarm.worker_claims), with real processes and Redis.

A worker with one slot and the default prefetch of 2 holds one task running and two prefetched:
claimed and leased to it, their handlers not started; with ``--prefetch 0`` it holds the running
one only (the swarm's capacity is one task). On SIGTERM the running one finishes within the grace
and the prefetched ones are handed back unrun, their attempts uncounted: nothing lost, nothing run
twice.

A slot frees as soon as its agent replies, before the group commit records the outcome (decision
78): with the commit stalled the slot runs the next task, the finishing tasks stay held and
leased, the worker still holds at most slots + window tasks, and each task completes once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.errors import RedisUnavailable
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.ops.tasks import Outcome
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import Claimed, TaskStore, task_spec
from tests.faults.inprocess import System, worker_system

from .helpers import eventually

pytestmark = pytest.mark.slow

HANDLERS = "tests.integration.agent_handlers:"


@pytest.mark.parametrize(("prefetch", "held_n"), [(None, 3), (0, 1)])
async def test_one_slot_holds_its_prefetch_and_hands_it_back_on_sigterm(
    settings: Settings, tmp_path: Path, prefetch: int | None, held_n: int
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    group = ProcessGroup(settings.replace(heartbeat_timeout_ms=3000), tmp_path)
    group.spawn("coordinator", ["coordinator", "--id", "coord"])
    worker = group.spawn(
        "w1",
        [
            *("worker", "--id", "w1", "--swarm", "s:pf:1", "--allow-handlers", "tests."),
            *("--concurrency", "1", "--grace-s", "30"),
            *(("--prefetch", str(prefetch)) if prefetch is not None else ()),
        ],
    )
    store = TaskStore(Scripts(connect(settings)), Keys(settings.namespace))
    try:
        ids = ["a", "b", "c", "d"]
        await store.submit(
            [
                (
                    task_spec(HANDLERS + "nap", id=tid, capabilities=["pf"]),
                    {"dir": str(marks), "seconds": 4.0 if tid == "a" else 0.1},
                )
                for tid in ids
            ]
        )

        async def first_started() -> str:
            return next((t for t in ids if (marks / f"{t}.started").exists()), "")

        first = await eventually(first_started, timeout_s=60, what="a first run")

        async def held() -> list[str]:
            tasks = await store.get_many(ids)
            running = [t.id for t in tasks if t is not None and t.status == "running"]
            return running if len(running) == held_n else []

        # one running, the rest prefetched (claimed, leased to w1, handlers not started)
        running = await eventually(held, timeout_s=30, what=f"{held_n} tasks held by w1")
        # the swarm's capacity is what w1 holds, so the leader assigns it nothing more
        assert (await SwarmRegistry(store.scripts, store.keys).get("s")).capacity == held_n
        taken = [t for t in await store.get_many(ids) if t is not None and t.status != "ready"]
        assert sorted(t.id for t in taken) == sorted(running), taken
        prefetched = [t for t in running if t != first]
        for tid in prefetched:
            assert not (marks / f"{tid}.started").exists()
            assert (await store.get(tid)).worker == "w1"
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=60) == 0
        for tid in prefetched:
            back = await store.get(tid)
            assert back.status in ("ready", "assigned") and back.attempts == 0, back
            assert not (marks / f"{tid}.runs").exists()  # never ran
        done = await store.get(first)
        assert done.status == "completed" and done.attempts == 1, done
    finally:
        await store.client.aclose()
        group.stop_all()


async def _submit(store: TaskStore, ids: list[str], marks: Path) -> None:
    await store.submit(
        [
            (
                # a short lease: a stall of several leases shows the finishing tasks' leases
                # are renewed (a lost lease would run the task again: two lines in its runs)
                task_spec(HANDLERS + "nap", id=t, capabilities=["x"], lease_ms=1500),
                {"dir": str(marks), "seconds": 0.0},
            )
            for t in ids
        ]
    )


@contextlib.asynccontextmanager
async def _one_slot(settings: Settings, tmp_path: Path) -> AsyncIterator[System]:
    """A worker with one agent of concurrency 1 (one slot, window 1) on swarm ``s``."""
    swarms = [swarm_spec("s", ["x"], agents=1)]
    async with worker_system(
        settings, swarms, tmp_path, allowed_handlers=["tests."], concurrency=1, prefetch=1
    ) as system:
        yield system


def _started(marks: Path) -> list[str]:
    return sorted(p.name.removesuffix(".started") for p in marks.glob("*.started"))


async def test_a_freed_slot_runs_the_next_task_while_the_outcome_waits(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slot, window 1: while the group commit is stalled, the slot runs the prefetched
    task (decision 78); the worker holds at most 2 tasks; each completes exactly once."""
    marks = tmp_path / "marks"
    marks.mkdir()
    async with _one_slot(settings, tmp_path) as system:
        worker = system.worker
        gate = asyncio.Event()
        batches: list[list[str]] = []
        peak = 0
        finish, claim = worker.tasks.finish, worker.tasks.claim

        async def stalled_finish(worker_id: str, outcomes: Sequence[Outcome]) -> list[str]:
            batches.append([o.id for o in outcomes])
            await gate.wait()
            return await finish(worker_id, outcomes)

        async def counted_claim(swarm_id: str, worker_id: str, count: int) -> list[Claimed]:
            nonlocal peak
            got = await claim(swarm_id, worker_id, count)
            # the claim loop puts them in `held` right after, before it yields
            peak = max(peak, len(worker.held) + len(got))
            return got

        monkeypatch.setattr(worker.tasks, "finish", stalled_finish)
        monkeypatch.setattr(worker.tasks, "claim", counted_claim)
        ids = [f"t{i}" for i in range(6)]
        await _submit(system.store, ids, marks)

        async def two_started() -> bool:
            return len(_started(marks)) == 2 and bool(batches)

        # nothing is recorded yet (the first batch waits on the gate), but the slot ran a second
        await eventually(two_started, timeout_s=20, what="a second run while the first records")
        await asyncio.sleep(4.0)  # more than two leases: renewals keep the finishing tasks
        assert len(_started(marks)) == 2, _started(marks)
        assert len(worker.held) == 2 and worker.finishing["s"] == 2
        for t in await system.store.get_many(_started(marks)):
            assert t is not None and t.status == "running" and t.attempts == 1, t
        gate.set()

        async def all_completed() -> bool:
            tasks = await system.store.get_many(ids)
            return all(t is not None and t.status == "completed" for t in tasks)

        await eventually(all_completed, timeout_s=60, what="all tasks completed")
        assert peak <= 2, peak
        assert worker.completed == len(ids)
        for t in await system.store.get_many(ids):
            assert t is not None and t.attempts == 1, t
        for tid in ids:
            assert (marks / f"{tid}.runs").read_text().count("\n") == 1, tid
        assert worker.finishing["s"] == 0


@pytest.mark.parametrize("error", [RedisUnavailable, RuntimeError])
async def test_an_outcome_that_cannot_be_recorded_runs_again_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    """The slot is free before the record: a record that fails still leaves the task to its
    lease (Redis unreachable: it expires) or fails the attempt (anything else), and the task
    runs and completes once more, as before decision 78."""
    marks = tmp_path / "marks"
    marks.mkdir()
    async with _one_slot(settings, tmp_path) as system:
        worker = system.worker
        finish = worker.tasks.finish
        failed: list[str] = []

        async def failing_once(worker_id: str, outcomes: Sequence[Outcome]) -> list[str]:
            if not failed:
                failed.extend(o.id for o in outcomes)
                raise error("injected: the batch is not recorded")
            return await finish(worker_id, outcomes)

        monkeypatch.setattr(worker.tasks, "finish", failing_once)
        ids = [f"t{i}" for i in range(4)]
        await _submit(system.store, ids, marks)

        async def all_completed() -> bool:
            tasks = await system.store.get_many(ids)
            return all(t is not None and t.status == "completed" for t in tasks)

        await eventually(all_completed, timeout_s=60, what="all tasks completed")
        assert failed
        for t in await system.store.get_many(ids):
            assert t is not None
            runs = (marks / f"{t.id}.runs").read_text().count("\n")
            assert runs == (2 if t.id in failed else 1), (t.id, runs)
        assert worker.completed == len(ids)
        assert not worker.held and worker.finishing["s"] == 0


@contextlib.asynccontextmanager
async def _one_agent(
    settings: Settings, tmp_path: Path, *, concurrency: int
) -> AsyncIterator[tuple[System, Path]]:
    """A worker hosting swarm ``s`` (capability ``x``) on one agent of ``concurrency`` slots,
    and the folder the handlers of tests/integration/agent_handlers.py mark their runs in."""
    marks = tmp_path / "marks"
    marks.mkdir()
    async with worker_system(
        settings,
        [swarm_spec("s", ["x"], agents=1)],
        tmp_path,
        allowed_handlers=["tests."],
        concurrency=concurrency,
    ) as system:
        yield system, marks


async def test_a_prefetched_task_cancelled_and_retried_runs_once(
    settings: Settings, tmp_path: Path
) -> None:
    """A prefetched task cancelled, then retried and claimed again by the same worker while its
    first claim still waits in the prefetch window: the attempts were reset, so both claims
    carried the same token before decision 121, and only the later one may run (found in
    review: the stale claim ran too, a task run twice without a fault)."""
    # one slot, the default prefetch of 2: room for the second claim beside the stale one
    async with _one_agent(settings, tmp_path, concurrency=1) as (system, marks):
        worker, store = system.worker, system.store
        nap = HANDLERS + "nap"
        await store.submit(
            [(task_spec(nap, id="long", capabilities=["x"]), {"dir": str(marks), "seconds": 4})]
        )
        await system.running("long")
        await store.submit(
            [(task_spec(nap, id="t", capabilities=["x"]), {"dir": str(marks), "seconds": 0})]
        )

        async def prefetched() -> bool:
            return "t" in worker.held and any(c.id == "t" for c in worker.prefetched["s"])

        await eventually(prefetched, timeout_s=20, what="t prefetched")
        first = worker.held["t"].claimed
        assert await store.cancel("t")

        async def dropped() -> bool:
            return "t" not in worker.held

        await eventually(dropped, timeout_s=10, what="t no longer held")
        await store.retry(["t"])

        async def claimed_again() -> bool:
            held = worker.held.get("t")
            return held is not None and held.claimed is not first

        await eventually(claimed_again, timeout_s=10, what="t claimed again")
        # (their tokens looked alike then; since decision 121 each claim has its own, and the
        # worker tells the claims apart by identity either way: decision 98)
        assert worker.held["t"].claimed.token != first.token

        async def completed() -> bool:
            return (await store.get("t")).status == "completed"

        await eventually(completed, timeout_s=30, what="t completed")

        async def idle() -> bool:
            # nothing held, queued or running: a second run of t, if any, has happened
            return not worker.held and not worker.prefetched["s"] and not worker._running

        await eventually(idle, timeout_s=30, what="the worker idle")
        assert (marks / "t.runs").read_text().count("\n") == 1
        assert (await store.get("t")).attempts == 1


async def test_a_running_task_claimed_again_stops_its_stale_run_first(
    settings: Settings, tmp_path: Path
) -> None:
    """Cancelled and retried while it runs, and claimed again by the same worker before the
    cancel notice reached it (dropped here): the new claim took the old one's place in `held`,
    so the lease renewal no longer asked about the old one, and both runs went on side by side,
    the stale one to its end (found in review). A claim of a task held by another claim now
    tells the worker that one is stale: its run is stopped before the new one starts."""
    async with _one_agent(settings, tmp_path, concurrency=2) as (system, marks):
        worker, store = system.worker, system.store

        async def dropped(_task_id: str) -> None:
            return None

        worker._stop_if_cancelled = dropped  # type: ignore[method-assign,assignment]
        # (the stale run, left alone, would outlast every wait below)
        payload = {"dir": str(marks), "seconds": 600, "again_seconds": 0.2}
        await store.submit([(task_spec(HANDLERS + "nap", id="t", capabilities=["x"]), payload)])
        await system.running("t")
        first = worker.held["t"].claimed
        assert await store.cancel("t")
        await store.retry(["t"])

        async def claimed_again() -> bool:
            held = worker.held.get("t")
            return held is not None and held.claimed is not first

        await eventually(claimed_again, timeout_s=20, what="t claimed again")

        async def completed() -> bool:
            return (await store.get("t")).status == "completed"

        # (generous: on a loaded machine the stop may end in a kill, the agent's restart after
        # its backoff, and the task handed back and claimed again; seen once in CI)
        await eventually(completed, timeout_s=120, what="t completed")

        async def idle() -> bool:
            return not worker.held and not worker._running and not worker._handlers

        # the stale run (600 s) was stopped, not left running beside the new one
        await eventually(idle, timeout_s=30, what="the worker idle")
        assert (marks / "t.runs").read_text().count("\n") == 2
        assert (await store.get("t")).attempts == 1


async def test_no_claim_waits_in_redis_while_the_loop_claims(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that found the queue empty schedules a claim that waits in Redis; if the loop is
    woken before that one is sent, its own next claim must not run beside it (both would
    take the same room: found in review)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    async with _one_slot(settings, tmp_path) as system:
        worker = system.worker
        claim = worker.tasks.claim
        raced: list[bool] = []
        woke = False

        async def claim_then_wake(swarm_id: str, worker_id: str, count: int) -> list[Claimed]:
            nonlocal woke
            if woke:  # the claim that follows the wake-up: is a waiting claim armed beside it?
                woke = False
                got = await claim(swarm_id, worker_id, count)
                raced.append(swarm_id in worker.polls)
                return got
            got = await claim(swarm_id, worker_id, count)
            if len(got) < count and not raced:
                # drained: the loop schedules a waiting claim, but is woken first
                woke = True
                worker.wake[swarm_id].set()
            return got

        monkeypatch.setattr(worker.tasks, "claim", claim_then_wake)
        await _submit(system.store, ["t0"], marks)

        async def looked_again() -> bool:
            return bool(raced)

        await eventually(looked_again, timeout_s=20, what="a claim after the wake-up")
        assert raced == [False]


async def test_a_stopping_worker_hands_back_its_prefetched_tasks_first(
    settings: Settings, tmp_path: Path
) -> None:
    """On SIGTERM the worker lets its running task finish within the grace; tasks prefetched
    behind it were held the whole grace (leased, idle, while other hosts could run them) and
    handed back only at its end (found in review). They go back at once now."""
    async with _one_agent(settings, tmp_path, concurrency=1) as (system, marks):
        worker, store = system.worker, system.store
        worker.grace_s = 60.0
        nap = HANDLERS + "nap"
        await store.submit(
            [(task_spec(nap, id="long", capabilities=["x"]), {"dir": str(marks), "seconds": 6})]
        )
        await system.running("long")
        await store.submit(
            [
                (task_spec(nap, id=t, capabilities=["x"]), {"dir": str(marks), "seconds": 0})
                for t in ("p1", "p2")
            ]
        )

        async def prefetched() -> bool:
            return {"p1", "p2"} <= set(worker.held)

        await eventually(prefetched, timeout_s=20, what="p1 and p2 prefetched")
        system.stop.set()

        async def handed_back() -> bool:
            return all(t.status == "ready" for t in await store.get_many(["p1", "p2"]) if t)

        await eventually(handed_back, timeout_s=20, what="the prefetched tasks handed back")
        assert (await store.get("long")).status == "running"  # still within its grace
        await asyncio.wait_for(system.run, 60)
        assert (await store.get("long")).status == "completed"
        assert [t.attempts for t in await store.get_many(["p1", "p2"]) if t] == [0, 0]
