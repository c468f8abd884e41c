"""What a worker tells a running task's record: its handler's progress reports (decision 128:
the latest of each run, fenced by the run's token) and, once it has run a second, its agent and
start (decision 130)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from multiswarm import Multiswarm
from multiswarm.config import Settings
from multiswarm.registry import swarm_spec
from multiswarm.tasks import task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow

HANDLERS = "tests.integration.agent_handlers:"


@pytest.mark.parametrize(
    ("handler", "concurrency"),
    [("report_then_wait", 1), ("report_then_wait", 2), ("report_then_wait_async", 2)],
)
async def test_a_running_handler_s_progress_is_on_its_record(
    settings: Settings, tmp_path: Path, handler: str, concurrency: int
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    swarms = [swarm_spec("s", ["x"], agents=1)]
    options = {"allowed_handlers": ["tests."], "concurrency": concurrency}
    async with worker_system(settings, swarms, tmp_path, **options) as system:  # type: ignore[arg-type]
        spec = task_spec(HANDLERS + handler, id="long", capabilities=["x"])
        await system.store.submit([(spec, {"dir": str(marks)})])

        async def halfway() -> bool:
            t = await system.store.get("long")
            return t.status == "running" and t.progress_note == "halfway"

        await eventually(halfway, timeout_s=60, what="the first report on the record")
        t = await system.store.get("long")
        assert t.progress == 0.5 and t.progress_ms > 0
        # fencing: a report of a run that does not hold the task is not written, and a report
        # older than the recorded one (a retried call's) changes nothing
        stale = [("long", "9@elsewhere", "s.a9", 1, 0.9, "stale", 0)]
        assert await system.store.record_progress(stale) == 0
        # (ages: a report made an hour ago is older than the recorded one)
        older = [("long", t.token, "", 0, 0.1, "older", 3_600_000)]
        assert await system.store.record_progress(older) == 0
        assert (await system.store.get("long")).progress_note == "halfway"

        (marks / "go").touch()

        async def completed() -> bool:
            return (await system.store.get("long")).status == "completed"

        await eventually(completed, timeout_s=30, what="the task completed")
        # the last report of the run stays with the completed task, if it came in time
        done = await system.store.get("long")
        assert done.progress in (0.5, 1.0)


async def test_a_run_that_goes_on_names_its_agent_and_its_start(
    settings: Settings, tmp_path: Path
) -> None:
    """Nothing recorded which agent ran a task (found in session 21's CLI review): ``tasks
    list`` showed no agent and ``agents list`` no task for a swarm of two agents. A run still
    going a FLUSH_S after it started now has its agent and real start on its record
    (decision 130)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    swarms = [swarm_spec("s", ["x"], agents=2)]
    async with worker_system(settings, swarms, tmp_path, allowed_handlers=["tests."]) as system:
        specs = [
            task_spec(HANDLERS + "report_then_wait", id=f"t{i}", capabilities=["x"])
            for i in range(2)
        ]
        submitted_ms = int(time.time() * 1000)
        await system.store.submit([(spec, {"dir": str(marks)}) for spec in specs])

        async def both_named() -> bool:
            tasks = await system.store.get_many(["t0", "t1"])
            return all(t is not None and t.agent for t in tasks)

        await eventually(both_named, timeout_s=60, what="both runs naming their agents")
        tasks = [t for t in await system.store.get_many(["t0", "t1"]) if t is not None]
        assert sorted(t.agent for t in tasks) == ["s.a0", "s.a1"]
        assert all(t.status == "running" and t.started_ms >= submitted_ms for t in tasks)
        async with await Multiswarm.connect(settings=settings) as ms:
            agents = {a.agent: a for a in await ms.list_agents()}
        assert sorted(tid for a in agents.values() for tid in a.tasks) == ["t0", "t1"]
        (marks / "go").touch()
