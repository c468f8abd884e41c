"""The worker's group commit (multiswarm.worker_outcomes): when an outcome waits for others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from multiswarm.ops.tasks import Outcome
from multiswarm.worker_outcomes import GroupCommit


class _Store:
    """What GroupCommit uses of a task store: finish, here recording each call's batch."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def finish(self, worker_id: str, outcomes: list[Outcome]) -> list[str]:
        self.calls.append([o.id for o in outcomes])
        return ["completed"] * len(outcomes)


@pytest.mark.parametrize(("lone", "batches"), [(False, [["a", "b"]]), (True, [["a"], ["b"]])])
async def test_an_outcome_waits_two_turns_only_while_other_runs_are_under_way(
    lone: bool, batches: list[list[str]]
) -> None:
    store = _Store()
    commit = GroupCommit(cast(Any, store), "w1", lone=lambda: lone)
    replies: list[str | BaseException] = []
    commit.post(Outcome("a", "1@w1", "ok", b"\xc0"), replies.append)
    await asyncio.sleep(0)  # a turn later, another run's outcome arrives
    commit.post(Outcome("b", "1@w1", "ok", b"\xc0"), replies.append)
    await commit.close()
    # under load the two go in one call; a lone run's goes at once (nothing could join it)
    assert store.calls == batches
    assert replies == ["completed", "completed"]


async def test_a_cancelled_flush_answers_the_outcomes_queued_behind_its_call() -> None:
    """Cancelled during a call (its close() cancelled at shutdown), the flush told that call's
    outcomes and raised: those queued behind it were never sent nor answered, and the worker
    counted them as finishing for good (found in review)."""
    release = asyncio.Event()

    class _Slow(_Store):
        async def finish(self, worker_id: str, outcomes: list[Outcome]) -> list[str]:
            self.calls.append([o.id for o in outcomes])
            await release.wait()
            return ["completed"] * len(outcomes)

    store = _Slow()
    commit = GroupCommit(cast(Any, store), "w1", lone=lambda: True)
    replies: dict[str, str | BaseException] = {}

    def sink(task: str) -> Callable[[str | BaseException], None]:
        return lambda reply: replies.__setitem__(task, reply)

    commit.post(Outcome("a", "1@w1", "ok", b"\xc0"), sink("a"))
    await asyncio.sleep(0.01)  # a's call in flight
    commit.post(Outcome("b", "1@w1", "ok", b"\xc0"), sink("b"))
    closing = asyncio.create_task(commit.close())
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    release.set()
    await asyncio.sleep(0.01)
    assert store.calls == [["a"]]
    assert set(replies) == {"a", "b"}
    assert all(isinstance(r, asyncio.CancelledError) for r in replies.values())
