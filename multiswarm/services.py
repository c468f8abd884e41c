"""The long-running loops of the registry, coordinator and state-manager processes.

Each loop drives one component (:class:`~multiswarm.registry.SwarmRegistry`,
:class:`~multiswarm.coordinator.SwarmCoordinator`,
:class:`~multiswarm.state.SwarmStateManager`) until its ``stop`` event is set; the components
themselves only offer single rounds (``reap_workers``, ``dispatch_once``, ``snapshot_round``...).
:mod:`multiswarm.roles` runs them as processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from multiswarm.errors import MultiswarmError
from multiswarm.messenger import SwarmMessenger
from multiswarm.recovery import SwarmRecovery
from multiswarm.registry import SwarmRegistry, housekeeping
from multiswarm.state import SwarmStateManager

log = logging.getLogger(__name__)


# -- registry ------------------------------------------------------------------------------------
#: Longest pause between two housekeeping rounds, in seconds (shorter when the result TTL is).
HOUSEKEEPING_S = 10.0


async def _keep_house(
    registry: SwarmRegistry,
    stop: asyncio.Event,
    interval_s: float,
    archive_ms: int,
    result_ttl_ms: int,
) -> None:
    while not stop.is_set():
        try:
            pruned = await housekeeping(
                registry, archive_ms=archive_ms, result_ttl_ms=result_ttl_ms
            )
            if pruned:
                log.debug("pruned %d finished tasks", pruned)
        except MultiswarmError as e:
            log.warning("housekeeping round failed: %s", e)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


async def run_registry(
    registry: SwarmRegistry,
    stop: asyncio.Event,
    *,
    heartbeat_timeout_ms: int,
    archive_ms: int,
    result_ttl_ms: int,
    housekeeping_s: float | None = None,
) -> None:
    """Registry process: reap workers whose heartbeat expired (every sixth of the timeout) and,
    in its own loop so a long round never delays reaping, run :func:`~multiswarm.registry.housekeeping` every
    ``housekeeping_s`` (default: half the result TTL, between 1 and :data:`HOUSEKEEPING_S` s).

    Raises whatever unexpected error stops the housekeeping loop, so the process exits
    non-zero instead of running on without pruning.
    """
    interval_s = (
        housekeeping_s
        if housekeeping_s is not None
        else min(HOUSEKEEPING_S, max(1.0, result_ttl_ms / 2000))
    )
    keeper = asyncio.create_task(_keep_house(registry, stop, interval_s, archive_ms, result_ttl_ms))
    messenger = SwarmMessenger(registry.client, registry.keys, sender="registry")
    try:
        while not stop.is_set():
            if keeper.done():
                keeper.result()  # raises what stopped it
            try:
                dead = await registry.reap_workers(heartbeat_timeout_ms)
                if dead:
                    log.warning(
                        "workers declared dead (no heartbeat for %d ms): %s",
                        heartbeat_timeout_ms,
                        dead,
                    )
                    await messenger.publish(
                        registry.keys.ch_events, "swarm.worker.dead", {"workers": dead}
                    )
                    await messenger.publish(registry.keys.ch_tasks, "swarm_changed", {})
            except MultiswarmError as e:
                log.warning("registry round failed: %s", e)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=heartbeat_timeout_ms / 6000)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


# -- state manager -------------------------------------------------------------------------------
async def run_state_manager(
    manager: SwarmStateManager,
    stop: asyncio.Event,
    interval_ms: int,
    *,
    recovery_poll_ms: int = 5_000,
) -> None:
    """State-manager process until ``stop``: automatic snapshots of active swarms every
    ``interval_ms`` (``SNAPSHOT_INTERVAL``), and every ``recovery_poll_ms`` a recovery round
    that applies plans at or above ``auto_recover_min_confidence`` and logs the others for an
    operator (``multiswarm-cli recover list``). A swarm left to an operator is planned again
    only after ``interval_ms``, so many of them do not cost a full planning pass per poll."""
    recovery = SwarmRecovery(manager, actor=f"state-manager-{os.getpid()}")
    last_snapshot = float("-inf")
    left_at: dict[str, float] = {}  # swarm id -> when it was last left to an operator
    while not stop.is_set():
        now = time.monotonic()
        if now - last_snapshot >= interval_ms / 1000:
            last_snapshot = now
            try:
                taken = await manager.snapshot_round(interval_ms)
                await recovery.prune()
                log.info("automatic snapshots: %d taken", taken)
            except MultiswarmError as e:
                log.warning("snapshot round failed: %s", e)
        left_at = {s: t for s, t in left_at.items() if now - t < interval_ms / 1000}
        try:
            outcomes, left = await recovery.auto_recover(
                manager.auto_recover_min_confidence, skip=left_at.keys()
            )
            for o in outcomes:
                log.info(  # the system doing its job: not a warning
                    "recovered %s from %s (confidence %.2f): %s, %d tasks re-queued",
                    o.swarm,
                    o.source,
                    o.confidence,
                    o.outcome,
                    len(o.requeued),
                )
            for p in left:
                log.warning(
                    "%s left for an operator: best source %s, confidence %.2f < %.2f",
                    p.swarm,
                    p.source,
                    p.confidence,
                    manager.auto_recover_min_confidence,
                )
                left_at[p.swarm] = now
        except MultiswarmError as e:
            log.warning("recovery round failed: %s", e)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(recovery_poll_ms, interval_ms) / 1000)
