"""An async handler that blocks its agent's event loop is charged for the kill it causes, not
the tasks beside it (decision 125).

A task timing out beside such a handler cannot be stopped (its stop waits for the loop), so
the worker kills the agent. Before, the timed-out task was charged the attempt and the blocker
handed back uncounted: with one attempt the innocent task went dead, while the blocker ran
again, for ever. Here each has one attempt: the blocker must end dead and the other complete. The agent now names the run holding its loop and the worker charges that one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.registry import swarm_spec
from multiswarm.tasks import task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow

HANDLERS = "tests.integration.agent_handlers:"


async def test_the_blocker_is_charged_and_the_task_beside_it_completes(
    settings: Settings, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    swarms = [swarm_spec("s", ["x"], agents=1)]
    options = {"allowed_handlers": ["tests."], "concurrency": 2, "prefetch": 0}
    async with worker_system(settings, swarms, tmp_path, **options) as system:  # type: ignore[arg-type]
        hog = task_spec(
            HANDLERS + "hog", id="hog", capabilities=["x"], timeout_ms=120_000, max_attempts=1
        )
        await system.store.submit([(hog, {"dir": str(marks), "seconds": 60})])
        await system.running("hog")

        async def started() -> bool:
            return (marks / "hog.started").is_file()

        await eventually(started, timeout_s=30, what="the hog blocking")
        victim = task_spec(
            HANDLERS + "nap", id="victim", capabilities=["x"], timeout_ms=1000, max_attempts=1
        )
        await system.store.submit([(victim, {"dir": str(marks), "seconds": 0.2})])

        async def victim_ended() -> bool:
            return (await system.store.get("victim")).status in ("completed", "dead")

        await eventually(victim_ended, timeout_s=60, what="the victim ending")
        task = await system.store.get("victim")
        assert task.status == "completed", (task.status, task.error)
        # the blocker, not the victim, went to the dead-letter queue, saying why
        blocker = await system.store.get("hog")
        assert blocker.status == "dead" and "blocked the agent's event loop" in blocker.error
