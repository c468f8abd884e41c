"""An unexpected exception while a worker runs a task fails that attempt at once.

``Worker._execute`` caught only MultiswarmError: anything else (a bug, an unexpected reply)
escaped into a background task nobody awaited, the task stayed ``running`` in Redis until its
lease ran out (30 s by default) and the error was lost. Now the attempt is failed with the error
text, the agent is freed, and the retry runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from multiswarm.config import Settings
from multiswarm.registry import swarm_spec
from multiswarm.tasks import task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow


async def test_unexpected_error_fails_the_attempt_and_frees_the_agent(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(heartbeat_timeout_ms=3000, lease_ms=2000)
    async with worker_system(settings, [swarm_spec("s", ["x"], agents=1)], tmp_path) as system:

        async def registered() -> bool:
            return await system.store.client.hexists(system.keys.workers, "w1")

        await eventually(registered, what="w1 registered")
        memory = system.worker.memory
        assert memory is not None
        admit = memory.admit
        calls = 0

        def admit_once_broken(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("injected fault")
            return admit(*args, **kwargs)

        memory.admit = admit_once_broken  # type: ignore[method-assign]

        # a lease far longer than the wait: only a failed attempt can free the task in time
        await system.store.submit(
            [
                (
                    task_spec(
                        "multiswarm.demo_tasks:noop",
                        id="t",
                        capabilities=["x"],
                        lease_ms=120_000,
                        backoff_ms=2000,
                    ),
                    {"n": 1},
                )
            ]
        )

        async def failed() -> bool:
            t = await system.store.get("t")
            return t.status == "failed" and "RuntimeError: injected fault" in t.error

        await eventually(failed, timeout_s=20, what="t's first attempt failed with the error")

        async def completed() -> bool:
            return (await system.store.get("t")).status == "completed"

        await eventually(completed, timeout_s=20, what="t completed on its second attempt")
        t = await system.store.get("t")
        assert (t.attempts, t.worker) == (2, "w1")
        stats = await system.store.stats()
        assert stats.get("retries", 0) == 1
        assert not system.run.done()  # the worker goes on
