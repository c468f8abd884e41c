"""The leader's dispatch loop and its wake-ups (multiswarm.services.CoordinatorProcess)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from multiswarm.services import CoordinatorProcess


class _Leader:
    """What ``_lead`` uses of a coordinator: an elected leader whose rounds assign nothing."""

    def __init__(self, during_round: Any) -> None:
        self.keys = SimpleNamespace(
            partitions=1, partition=0, task_keys=SimpleNamespace(delayed="d")
        )
        self.election = SimpleNamespace(is_leader=True, epoch=1, holder_id="c1")
        self.batch_size = 200
        self.more = False
        self.rounds = 0
        self.during_round = during_round

    def idle_s(self, cap_s: float) -> float:
        # without the wake-up the leader would wait for its safety net: make that an hour
        return 3600.0

    async def dispatch_once(self) -> int:
        self.rounds += 1
        await self.during_round(self.rounds)
        return 0


async def test_a_submission_heard_during_a_round_starts_another_round() -> None:
    stop = asyncio.Event()

    async def during_round(n: int) -> None:
        if n == 1:  # e.g. the round a completion started, as the next task is submitted
            proc.hear(cast(Any, SimpleNamespace(type="task_submitted", sender="tasks")))
        else:
            stop.set()

    leader = _Leader(during_round)
    proc = CoordinatorProcess(cast(Any, leader))
    # the bound only keeps a failing run from hanging: the second round follows the notice
    await asyncio.wait_for(proc._lead(stop), timeout=30)
    assert leader.rounds == 2
