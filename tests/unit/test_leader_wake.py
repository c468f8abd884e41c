"""The leader's dispatch loop and its wake-ups (multiswarm.coordinator_process)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from multiswarm.coordinator_process import CoordinatorProcess
from multiswarm.errors import StaleEpoch


class _Leader:
    """What ``_lead`` uses of a coordinator: an elected leader whose rounds assign nothing."""

    def __init__(self, during_round: Any) -> None:
        self.keys = SimpleNamespace(
            partitions=1, partition=0, task_keys=SimpleNamespace(delayed="d")
        )
        self.election = SimpleNamespace(is_leader=True, epoch=1, holder_id="c1")
        self.batch_size = 200
        self.more = False
        self.can_dispatch_when_woken = False  # woken by PUBLISH: the loop waits on its event
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


class _WokenLeader(_Leader):
    """A leader that waits inside its dispatch calls (dispatch_when_woken) once idle."""

    def __init__(self, during_round: Any) -> None:
        super().__init__(during_round)
        self.can_dispatch_when_woken = True
        self.waits: list[int] = []
        self.waiting = asyncio.Event()
        self.abandoned = 0

    async def dispatch_when_woken(self, block_ms: int) -> tuple[bool, int]:
        self.waits.append(block_ms)
        self.waiting.set()
        try:
            await asyncio.sleep(3600)  # no wake-up entry comes
        except asyncio.CancelledError:
            self.abandoned += 1
            raise
        return True, 0


async def test_an_idle_leader_waits_in_its_call_and_a_notice_of_its_own_ends_the_wait() -> None:
    stop = asyncio.Event()

    async def during_round(n: int) -> None:
        if n == 2:
            stop.set()

    leader = _WokenLeader(during_round)
    proc = CoordinatorProcess(cast(Any, leader))
    lead = asyncio.ensure_future(proc._lead(stop))
    # the first round assigned nothing: the leader waits in Redis
    await asyncio.wait_for(leader.waiting.wait(), timeout=30)
    assert leader.rounds == 1 and leader.waits == [3_600_000]  # until the first retry is due
    # a notice of this process (the reaper freed slots, an operator's retry) ends the wait
    # and a round follows at once
    proc.hear(cast(Any, SimpleNamespace(type="task_submitted", sender="tasks")))
    await asyncio.wait_for(lead, timeout=30)
    assert leader.rounds == 2 and leader.abandoned == 1


class _Election:
    """An election whose term a test can change; it records step-downs."""

    def __init__(self) -> None:
        self.is_leader, self.epoch, self.holder_id = True, 1, "c1"
        self.step_downs = 0
        self.stepped_down = asyncio.Event()

    def step_down(self) -> None:
        self.step_downs += 1
        self.stepped_down.set()
        self.epoch, self.is_leader = 0, False


@pytest.mark.parametrize("won_again", [True, False])
async def test_a_refusal_of_a_call_from_an_earlier_term_does_not_end_the_current_one(
    won_again: bool,
) -> None:
    stop = asyncio.Event()

    async def during_round(n: int) -> None:
        if n == 2:
            stop.set()

    leader = _WokenLeader(during_round)
    election = _Election()
    leader.election = cast(Any, election)

    async def refused(block_ms: int) -> tuple[bool, int]:
        # the lease was lost while the call waited in Redis, and (or not) won again
        election.epoch = 2 if won_again else 1
        raise StaleEpoch("STALE_EPOCH", "epoch 1 < 2")

    leader.dispatch_when_woken = refused  # type: ignore[method-assign]
    proc = CoordinatorProcess(cast(Any, leader))
    lead = asyncio.ensure_future(proc._lead(stop))
    if won_again:  # the new term leads on: a round follows at once
        await asyncio.wait_for(lead, timeout=30)
        assert election.step_downs == 0 and leader.rounds == 2
    else:  # its own term refused: it steps down
        await asyncio.wait_for(election.stepped_down.wait(), timeout=30)
        stop.set()
        proc.wake.set()
        await asyncio.wait_for(lead, timeout=30)
        assert election.step_downs == 1 and leader.rounds == 1
