"""Reconnect logic: connection errors are retried, but never a cancellation in disguise."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from multiswarm.connection import with_retry
from multiswarm.errors import RedisUnavailable


async def test_connection_errors_are_retried_then_typed() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise redis.exceptions.ConnectionError("restarting")
        return "ok"

    assert await with_retry(flaky, timeout_s=10) == "ok" and calls == 3

    async def down() -> str:
        raise redis.exceptions.ConnectionError("down")

    with pytest.raises(RedisUnavailable):
        await with_retry(down, timeout_s=0.2)


async def test_a_cancellation_reported_as_a_connection_error_still_cancels() -> None:
    """redis-py may turn a cancellation that lands mid-read into ConnectionError; retrying it
    would keep a cancelled task alive forever."""
    calls = 0

    async def read_cut_by_cancel() -> str:
        nonlocal calls
        calls += 1
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # what stop() does to the task...
        raise redis.exceptions.ConnectionError("Connection closed")  # ...as redis-py reports it

    task = asyncio.create_task(with_retry(read_cut_by_cancel, timeout_s=60))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert calls == 1 and task.cancelled()


@pytest.mark.parametrize(
    "failing_over",
    [
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing"),
        redis.exceptions.SlotNotCoveredError("Slot 1234 is not covered by the cluster"),
    ],
)
async def test_a_cluster_failing_over_is_waited_out(failing_over: Exception) -> None:
    """Past redis-py's own few retries (~0.75 s), a cluster still failing over answered the
    caller with its reply error, which ended loops that wait out outages (found in review)."""
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise failing_over
        return "ok"

    assert await with_retry(flaky, 5.0) == "ok" and calls == 3


async def test_a_reply_that_is_an_answer_is_not_retried() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong")

    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        await with_retry(refused, 5.0)
    assert calls == 1
