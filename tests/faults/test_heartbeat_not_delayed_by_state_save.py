"""A slow state save does not delay a worker's heartbeats past the heartbeat timeout.

The worker saves its per-swarm progress (a compare-and-set with up to 20 retries per swarm) and
reconciles its members with the registry's targets (reads every swarm). When those shared the
heartbeat's loop, a slow round delayed the next beat: the registry declared a healthy worker
dead and re-queued its tasks. Beats have their own loop now.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from multiswarm.config import Settings
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow


async def test_slow_state_save_does_not_make_a_healthy_worker_dead(
    settings: Settings, tmp_path: Path
) -> None:
    timeout_ms = 1500
    settings = settings.replace(heartbeat_timeout_ms=timeout_ms, lease_ms=2000)
    async with worker_system(settings, [swarm_spec("s", ["x"], agents=1)], tmp_path) as system:
        registry = SwarmRegistry(Scripts(system.store.client), system.keys)

        async def registered() -> bool:
            return await system.store.client.hexists(system.keys.workers, "w1")

        await eventually(registered, what="w1 registered")

        save = system.worker.state.update_state

        async def slow_save(*args: Any, **kwargs: Any) -> int:
            await asyncio.sleep(2 * timeout_ms / 1000)  # contention, a slow Redis, many swarms
            return await save(*args, **kwargs)

        system.worker.state.update_state = slow_save  # type: ignore[method-assign]

        # reap as the registry process does, for four heartbeat timeouts
        reaped: list[str] = []
        for _ in range(int(4 * timeout_ms / 200)):
            reaped += await registry.reap_workers(timeout_ms)
            await asyncio.sleep(0.2)
        assert reaped == [], "a healthy worker was declared dead during a slow state save"
        assert not system.run.done()
