"""Stopping a member that ignores SIGTERM does not stall the worker's event loop.

``ExternalMember.stop`` waited up to 5 s for the process (``Popen.wait``) and
``AgentProcess.stop``/``kill`` joined up to 2 s/5 s, all on the event loop: meanwhile no lease
was renewed and no heartbeat sent. Scaling down an external member that ignores SIGTERM then let
the 1 s lease of a task running beside it lapse, and the leader re-ran the task.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow

#: an external member that ignores SIGTERM: stopping it takes the whole stop timeout
STUBBORN = shlex.join(
    [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
    ]
)


async def test_scaling_down_a_stubborn_member_keeps_leases(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(heartbeat_timeout_ms=3000, lease_ms=2000)
    async with worker_system(
        settings, [swarm_spec("s", ["x"], agents=2)], tmp_path, external={"s": STUBBORN}
    ) as system:
        registry = SwarmRegistry(Scripts(system.store.client), system.keys)
        await system.store.submit(
            [
                (
                    task_spec(
                        "multiswarm.demo_tasks:sleep_then_return",
                        id="t",
                        capabilities=["x"],
                        lease_ms=1000,
                    ),
                    {"seconds": 12},
                )
            ]
        )
        await system.running("t")

        async def externals(n: int) -> bool:
            return len(system.worker.external.get("s", [])) == n

        assert await registry.scale("s", 5) == (3, 2)
        await eventually(lambda: externals(2), what="a second external member")
        assert await registry.scale("s", 2) == (1, 1)  # one external member is stopped
        await eventually(lambda: externals(1), what="the external member scaled down")

        async def completed() -> bool:
            return (await system.store.get("t")).status == "completed"

        await eventually(completed, timeout_s=30, what="t completed")
        stats = await system.store.stats()
        assert (stats.get("retries", 0), stats["executions"]) == (0, 1), stats
        assert (await system.store.get("t")).attempts == 1
