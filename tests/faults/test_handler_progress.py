"""A handler's progress reports reach its task record while it runs (decision 128): the latest
report of each run, fenced by the run's token, cleared by the next claim."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

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
        stale = [("long", "9@elsewhere", 0.9, "stale", t.progress_ms + 1)]
        assert await system.store.record_progress(stale) == 0
        older = [("long", t.token, 0.1, "older", t.progress_ms - 1)]
        assert await system.store.record_progress(older) == 0
        assert (await system.store.get("long")).progress_note == "halfway"

        (marks / "go").touch()

        async def completed() -> bool:
            return (await system.store.get("long")).status == "completed"

        await eventually(completed, timeout_s=30, what="the task completed")
        # the last report of the run stays with the completed task, if it came in time
        await asyncio.sleep(0)
        done = await system.store.get("long")
        assert done.progress in (0.5, 1.0)
