"""A task whose input finds no room in the node's memory pool waits in its slot for a run to
free some, instead of going back and forth through Redis (decision 126).

Before, it was handed back at once, uncounted; the leader assigned it again, the worker claimed
it again and it was refused again, as fast as Redis answered, for as long as the run holding the
room took. Here one agent's share (the whole 256 KiB pool) holds one 150 KiB input at a time,
and two such tasks are claimed together (concurrency 2): the second must wait for the first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest

from multiswarm.config import Settings
from multiswarm.registry import swarm_spec
from multiswarm.tasks import task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow

SLEEP = "multiswarm.demo_tasks:sleep_then_return"


async def test_a_task_without_room_in_the_pool_waits_for_it(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="multiswarm")
    swarms = [swarm_spec("s", ["x"], agents=1)]
    options = {"pool_bytes": 4 * 64 * 1024, "concurrency": 2, "prefetch": 0}
    async with worker_system(settings, swarms, tmp_path, **options) as system:  # type: ignore[arg-type]
        pad = b"x" * 150_000
        specs = [task_spec(SLEEP, id=f"t{i}", capabilities=["x"]) for i in range(2)]
        await system.store.submit([(specs[0], {"seconds": 2.0, "pad": pad})])
        await system.running("t0")
        await system.store.submit([(specs[1], {"seconds": 0.1, "pad": pad})])

        async def both_done() -> bool:
            tasks = await system.store.get_many(["t0", "t1"])
            return all(t is not None and t.status == "completed" for t in tasks)

        await eventually(both_done, timeout_s=60, what="both tasks completed")
        # claimed once each: the second waited in its slot, it did not go round
        raw = await system.store.client.hget(system.keys.tasks, "t1")
        assert isinstance(raw, bytes) and msgspec.msgpack.decode(raw)["claims"] == 1
        handed_back = [r for r in caplog.records if "memory pool" in r.getMessage()]
        assert handed_back == []
        assert system.worker.gate is not None and system.worker.gate.waits >= 1
