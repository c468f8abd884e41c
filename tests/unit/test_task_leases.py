"""Task leases: a sound minimum, the configured default, a renew tick that follows the shortest
lease held, and each agent's share of the node pool (what an input may never exceed)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import click
import pytest
import redis.asyncio

from multiswarm.api import Multiswarm
from multiswarm.cli_tasks import tasks_submit
from multiswarm.config import Settings
from multiswarm.errors import BadRequest
from multiswarm.messages import MAX_ATTEMPTS
from multiswarm.placement import REGION_BYTES, NodeMemory
from multiswarm.tasks import MIN_LEASE_MS, Claimed, task_spec
from multiswarm.worker import Worker
from multiswarm.worker_liveness import HeldTask

NOOP = "multiswarm.demo_tasks:noop"


def test_a_lease_below_the_minimum_is_refused_with_the_reason() -> None:
    with pytest.raises(BadRequest, match=r"lease_ms=100 is below the minimum of 1000 ms"):
        task_spec(NOOP, lease_ms=100)
    assert task_spec(NOOP, lease_ms=MIN_LEASE_MS).lease_ms == 1000


def test_max_attempts_has_one_bound_for_every_interface() -> None:
    # the CLI capped it at 100 while the API and HTTP took up to 2**48
    assert task_spec(NOOP, max_attempts=MAX_ATTEMPTS).max_attempts == 1000
    for bad in (0, MAX_ATTEMPTS + 1, 2**48):
        with pytest.raises(BadRequest, match=r"max_attempts must be in \[1, 1000\]"):
            task_spec(NOOP, max_attempts=bad)
    [option] = [p for p in tasks_submit.params if p.name == "max_attempts"]
    assert isinstance(option.type, click.IntRange) and option.type.max == MAX_ATTEMPTS


async def test_distribute_task_defaults_to_the_configured_task_lease() -> None:
    settings = Settings(task_lease_ms=7_000)
    ms = Multiswarm(redis.asyncio.Redis(), settings)  # never connects: submit is captured
    submitted: list[Any] = []

    async def capture(tasks: Any) -> dict[str, str]:
        submitted.extend(spec for spec, _payload in tasks)
        return {spec.id: "ready" for spec, _payload in tasks}

    ms.tasks.submit = capture  # type: ignore[method-assign]
    await ms.distribute_task(NOOP, 1)
    await ms.distribute_task(NOOP, 2, lease_ms=2_000)
    assert [s.lease_ms for s in submitted] == [7_000, 2_000]
    await ms.client.aclose()


def _held(lease_ms: int) -> HeldTask:
    return HeldTask(
        Claimed(
            id=f"t{lease_ms}",
            token="k",
            handler=NOOP,
            payload=b"",
            timeout_ms=1000,
            lease_ms=lease_ms,
            attempts=1,
            deps=[],
        ),
        "s",
    )


async def test_renew_tick_follows_the_shortest_lease() -> None:
    worker = Worker(Settings(), [])
    try:
        assert worker._renew_tick_s() <= MIN_LEASE_MS / 12_000  # nothing held yet
        worker.held = {"a": _held(30_000)}
        assert worker._renew_tick_s() == 0.25
        worker.held["b"] = _held(1_000)
        # a renewal is due every third of the lease; looking 4x as often keeps it on time
        assert worker._renew_tick_s() * 4 <= 1.0 / 3
    finally:
        await worker.client.aclose()


async def test_a_run_that_ends_forgets_its_own_claim_not_a_later_one() -> None:
    # a task handed back (its agent killed) is assigned and claimed again by a claim that
    # waited in Redis, whose reply can come before the hand-back's: the old run's cleanup
    # must leave the new claim held (leased, renewed, run), or its lease runs out unrun
    worker = Worker(Settings(), [])
    try:
        old, new = _held(30_000), _held(30_000)
        worker.held = {old.claimed.id: new}
        worker._unhold(old.claimed)
        assert worker.held == {new.claimed.id: new}
        worker._unhold(new.claimed)
        assert worker.held == {}
    finally:
        await worker.client.aclose()


async def test_a_lost_lease_of_an_earlier_claim_leaves_a_later_claim_held() -> None:
    # the renewal asked for the old claim; before its reply the task was cancelled, retried
    # and claimed again by this worker (same token: attempts reset): "lost" is about the old
    # claim, so the new one stays held (leased, renewed, run)
    worker = Worker(Settings(), [])
    old, new = _held(3_000), _held(3_000)
    stop = asyncio.Event()
    asked: list[dict[str, str]] = []

    async def extend(worker_id: str, held: dict[str, str]) -> list[str]:
        asked.append(held)
        worker.held[new.claimed.id] = new  # claimed again while the renewal was under way
        stop.set()
        return list(held)

    try:
        worker.held = {old.claimed.id: old}
        # the new claim waits for a slot (a prefetched claim is what a stop drops)
        worker.prefetched["s"] = collections.deque([new.claimed])
        old.renewed = new.renewed = 0.0  # due
        worker.tasks.extend = extend  # type: ignore[method-assign]
        await asyncio.wait_for(worker._renew_leases(stop), 5)
        assert asked == [{old.claimed.id: old.claimed.token}]
        assert worker.held == {new.claimed.id: new}
    finally:
        await worker.client.aclose()


def test_agent_share_of_the_node_pool() -> None:
    memory = NodeMemory(1024 * 1024, n_agents=2)
    assert memory.share_bytes(0) == memory.share_bytes(1) == 512 * 1024
    assert memory.admit(0, [b"x" * (512 * 1024)]) is not None  # exactly the share fits
    assert memory.admit(1, [b"x" * (512 * 1024 + 1)]) is None  # one byte more never does
    memory.pool.set_limit(1, max_bytes=REGION_BYTES + 5)  # whole regions only
    assert memory.share_bytes(1) == REGION_BYTES
