"""The claim loop's prefetch window (multiswarm.worker_claims), with real processes and Redis.

A worker with one slot holds one task running and one prefetched: claimed and leased to it, its
handler not started. On SIGTERM the running one finishes within the grace and the prefetched one
is handed back unrun, its attempt uncounted: nothing lost, nothing run twice.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import eventually

pytestmark = pytest.mark.slow

HANDLERS = "tests.integration.agent_handlers:"


async def test_one_slot_holds_one_prefetched_task_and_hands_it_back_on_sigterm(
    settings: Settings, tmp_path: Path
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
            return running if len(running) == 2 else []

        # one running, one prefetched (claimed, leased to w1, handler not started)
        running = await eventually(held, timeout_s=30, what="two tasks held by w1")
        (prefetched,) = [t for t in running if t != first]
        assert not (marks / f"{prefetched}.started").exists()
        assert (await store.get(prefetched)).worker == "w1"
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=60) == 0
        back = await store.get(prefetched)
        assert back.status in ("ready", "assigned") and back.attempts == 0, back
        assert not (marks / f"{prefetched}.runs").exists()  # never ran
        done = await store.get(first)
        assert done.status == "completed" and done.attempts == 1, done
    finally:
        await store.client.aclose()
        group.stop_all()
