"""A worker whose agents run several tasks at once, on a real Redis: a cancel stops exactly its
task, and when the agent must be killed to stop one, its other tasks are handed back and
completed once, nothing lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def _system(
    settings: Settings, tmp_path: Path, concurrency: int
) -> AsyncIterator[tuple[TaskStore, Path]]:
    """A coordinator and one worker (one agent of ``concurrency``); yields a task store and the
    directory where handlers leave their marks. Stops both after."""
    group = _worker(settings, tmp_path, concurrency)
    store = TaskStore(Scripts(connect(settings)), Keys(settings.namespace))
    marks = tmp_path / "marks"
    marks.mkdir()
    try:
        yield store, marks
    finally:
        await store.client.aclose()
        group.stop_all()


def _worker(settings: Settings, tmp_path: Path, concurrency: int) -> ProcessGroup:
    group = ProcessGroup(settings.replace(heartbeat_timeout_ms=3000, lease_ms=2000), tmp_path)
    group.spawn("coordinator", ["coordinator", "--id", "coord"])
    group.spawn(
        "w1",
        [
            "worker",
            "--id",
            "w1",
            "--swarm",
            "s:conc:1",
            "--allow-handlers",
            "tests.",
            "--concurrency",
            str(concurrency),
        ],
    )
    return group


async def _submit(
    store: TaskStore, tasks: dict[str, tuple[str, float, float]], folder: Path
) -> None:
    """``{id: (handler, seconds, seconds on a run after the first)}``."""
    await store.submit(
        [
            (
                task_spec(HANDLERS + handler, id=tid, capabilities=["conc"], backoff_ms=100),
                {"dir": str(folder), "seconds": seconds, "again_seconds": again},
            )
            for tid, (handler, seconds, again) in tasks.items()
        ]
    )


async def _started(marks: Path, *ids: str) -> None:
    async def started() -> bool:
        return all((marks / f"{t}.started").exists() for t in ids)

    await eventually(started, timeout_s=60, what=f"{ids} started")


async def _until(store: TaskStore, status: str, *ids: str) -> None:
    async def reached() -> bool:
        return all(t is not None and t.status == status for t in await store.get_many(list(ids)))

    await eventually(reached, timeout_s=60, what=f"{ids} {status}")


async def test_cancel_of_one_of_several_concurrent_tasks_stops_only_it(
    settings: Settings, tmp_path: Path
) -> None:
    async with _system(settings, tmp_path, concurrency=4) as (store, marks):
        await _submit(
            store,
            {
                "a": ("spin", 3.0, 3.0),
                "long": ("spin", 120.0, 120.0),
                "b": ("nap", 3.0, 3.0),
                "c": ("nap", 3.0, 3.0),
            },
            marks,
        )
        await _until(store, "running", "a", "long", "b", "c")  # one agent, four at once
        # a stop that comes before the handler starts keeps it from starting: let it start
        await _started(marks, "a", "long", "b", "c")
        assert await store.cancel("long") == "cancelled"
        await _until(store, "completed", "a", "b", "c")
        long = await store.get("long")
        assert long.status == "cancelled" and long.attempts == 1
        assert (marks / "long.unwound").exists()  # its own finally ran
        tasks = await store.get_many(["a", "b", "c"])
        assert [t.attempts for t in tasks if t is not None] == [1, 1, 1]
        assert [(marks / f"{t}.runs").read_text().count("\n") for t in "abc"] == [1, 1, 1]
        log = (tmp_path / "w1.log").read_text()
        assert "killed" not in log, log[-2000:]  # stopped cooperatively, agent kept


async def test_kill_fallback_hands_the_other_tasks_back_and_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    async with _system(settings, tmp_path, concurrency=3) as (store, marks):
        await _submit(
            store,
            # x and y cannot finish their first run within the test: only a rerun completes them
            {"deaf": ("block", 120.0, 120.0), "x": ("spin", 300.0, 0.5), "y": ("nap", 300.0, 0.5)},
            marks,
        )
        await _until(store, "running", "deaf", "x", "y")
        await _started(marks, "deaf", "x", "y")
        # blocked in C in a pool thread: the stop cannot reach it, so its agent is killed
        assert await store.cancel("deaf") == "cancelled"
        await _until(store, "completed", "x", "y")
        log = (tmp_path / "w1.log").read_text()
        assert "did not stop the handler of deaf" in log, log[-2000:]
        for t in await store.get_many(["x", "y"]):
            # handed back uncounted (a failure would make this attempt 2), run again once, by
            # the second claim (tokens count claims: decision 121)
            assert t is not None and t.attempts == 1 and t.completed_by == "2@w1", repr(t)[-600:]
            assert (marks / f"{t.id}.runs").read_text().count("\n") == 2
        assert (await store.stats()).get("completed", 0) == 2
        assert (await store.get("deaf")).status == "cancelled"
