"""Operators retry dead tasks and purge finished ones (issue 14, item 6), on real processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.errors import BadRequest
from multiswarm.registry import swarm_spec
from multiswarm.tasks import TaskStore, task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow


async def _status(store: TaskStore, task_id: str, status: str) -> None:
    async def reached() -> bool:
        return (await store.get(task_id)).status == status

    await eventually(reached, timeout_s=30, what=f"{task_id} {status}")


async def test_dead_task_retried_to_completion(flaky: tuple[TaskStore, Path]) -> None:
    store, flag = flaky
    spec = task_spec(
        "tests.handlers:fail_while_file_exists",
        id="t",
        capabilities=["x"],
        max_attempts=1,
    )
    await store.submit([(spec, {"flag": str(flag)})])
    await store.submit([(task_spec("multiswarm.demo_tasks:noop", id="ok", capabilities=["x"]), 1)])
    await _status(store, "t", "dead")
    await _status(store, "ok", "completed")
    # refused: unknown, not finished badly, and nothing changes
    assert await store.retry(["nope", "ok"]) == {"nope": "not_found", "ok": "status:completed"}
    flag.unlink()
    assert await store.retry(["t"]) == {"t": "retried"}
    await _status(store, "t", "completed")
    t = await store.get("t")
    assert t.attempts == 1  # counted from zero again: one attempt after the retry
    assert await store.result("t") == "done"


async def test_cascade_cancelled_dependent_is_not_retried_alone(
    flaky: tuple[TaskStore, Path],
) -> None:
    store, flag = flaky
    parent = task_spec(
        "tests.handlers:fail_while_file_exists", id="p", capabilities=["x"], max_attempts=1
    )
    child = task_spec("multiswarm.demo_tasks:noop", id="c", capabilities=["x"], depends_on=["p"])
    await store.submit([(parent, {"flag": str(flag)}), (child, 1)])
    await _status(store, "c", "cancelled")
    # the child would read a result its dependency never produced
    assert await store.retry(["c"]) == {"c": "dependency:p"}
    assert (await store.get("c")).status == "cancelled"


async def test_purge_forgets_finished_tasks_but_keeps_results_still_needed(
    settings: Settings, tmp_path: Path
) -> None:
    swarms = [swarm_spec("s", ["x"], agents=1)]
    async with worker_system(settings, swarms, tmp_path) as system:
        store = system.store
        done = [
            task_spec("multiswarm.demo_tasks:noop", id=f"d{i}", capabilities=["x"])
            for i in range(5)
        ]
        await store.submit([(s, i) for i, s in enumerate(done)])
        for i in range(5):
            await _status(store, f"d{i}", "completed")
        # a pending task that depends on d0 and on a task that never ends: d0's result is needed
        await store.submit(
            [
                (task_spec("multiswarm.demo_tasks:noop", id="never", capabilities=["nobody"]), 0),
                (
                    task_spec(
                        "multiswarm.demo_tasks:noop",
                        id="waits",
                        capabilities=["x"],
                        depends_on=["d0", "never"],
                    ),
                    0,
                ),
            ]
        )
        with pytest.raises(BadRequest):
            await store.purge("running")
        assert await store.purge("completed", older_than_ms=3_600_000) == (0, [])
        purged, held = await store.purge("completed", batch=2)  # several bounded calls
        assert (purged, held) == (4, ["d0"])
        assert (await store.counts())["completed"] == 1
        assert (await store.get("d0")).status == "completed"
        assert await store.get_many(["d1", "d4"]) == [None, None]
