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

from multiswarm.coordinator import REAP_LIMIT, SwarmCoordinator
from multiswarm.envelopes import Delivered
from multiswarm.errors import AlreadyExists, MultiswarmError, RedisUnavailable, StaleEpoch
from multiswarm.messenger import SwarmMessenger
from multiswarm.recovery import SwarmRecovery
from multiswarm.registry import SwarmRegistry, housekeeping
from multiswarm.state import SwarmStateManager
from multiswarm.wakeups import wake_on

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


# -- coordinator ---------------------------------------------------------------------------------
#: Longest an idle leader waits for a notification before a dispatch round anyway, in seconds:
#: only a safety net for a lost one (submissions, completions, failures, cancellations and
#: swarm changes wake it at once; a delayed retry wakes it when it is due).
DISPATCH_SAFETY_S = 2.0
#: Longest pause of the leader's deadline timer, in seconds; it sleeps until the earliest lease
#: or assignment deadline when that is sooner.
REAP_SAFETY_S = 2.0


async def run_coordinator(coordinator: SwarmCoordinator, stop: asyncio.Event) -> None:
    """Coordinator process: contend for leadership, lead, and on ``stop`` hand leadership over
    at once (:class:`CoordinatorProcess`).

    Raises
    ------
    AlreadyExists
        Another live process leads under this coordinator's id: this one must not run.
    """
    await CoordinatorProcess(coordinator).run(stop)


class LeaseQuota:
    """How many partition leases one coordinator process may hold (decision 45): ``cap``,
    shared by the election loops of its partitions and set by its membership loop
    (:mod:`multiswarm.partition_leaders`) from the count of live coordinators."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.processes: list[CoordinatorProcess] = []
        #: set when another coordinator released a lease: count the live ones again now, so a
        #: clean stop's partitions are taken at once rather than at the next membership tick
        self.recount = asyncio.Event()
        self._reserved = 0

    def held(self) -> int:
        """Leases this process holds now (by each election's own clock)."""
        return sum(p.c.election.is_leader for p in self.processes)

    def reserve(self) -> bool:
        """Whether one more lease may be tried for; True reserves a place until
        :meth:`unreserve`, so loops trying at the same moment cannot together pass the cap."""
        if self.held() + self._reserved >= self.cap:
            return False
        self._reserved += 1
        return True

    def unreserve(self) -> None:
        self._reserved -= 1


class CoordinatorProcess:
    """The coordinator's loops for one partition: election (renew every third of the lease, or
    contend), the leader's dispatch rounds (woken by submissions and completions), its deadline
    timer, and a listener that wakes the others.

    Parameters
    ----------
    coordinator:
        The component whose rounds the loops run (its keys say the partition).
    quota:
        Shared by the partitions of one process when there are several: a lease is only tried
        for while the process holds fewer than ``quota.cap``, and the process listens once for
        all of them (:meth:`hear`). None: always tried for, and this partition listens itself.
    """

    def __init__(self, coordinator: SwarmCoordinator, quota: LeaseQuota | None = None) -> None:
        self.c = coordinator
        self.quota = quota
        if quota is not None:
            quota.processes.append(self)
        self.wake = asyncio.Event()
        self.contend = asyncio.Event()
        self.refused: AlreadyExists | None = None
        keys = coordinator.keys
        #: said in every log line when the deployment has partitions
        self.where = f" (partition {keys.partition})" if keys.partitions > 1 else ""

    async def run(self, stop: asyncio.Event) -> None:
        """Contend, lead, and on ``stop`` hand leadership over at once.

        Raises
        ------
        AlreadyExists
            Another live process leads under this coordinator's id: this one must not run.
        """
        # submissions and finished attempts wake the leader from their scripts (wake_on)
        wake = {self.c.keys.wake_leader: self.wake}
        loops = [
            self._elect(stop),
            self._reap(stop),
            wake_on(self.c.scripts.client, self.c.keys, wake),
        ]
        if self.quota is None:  # else the process listens once for all its partitions
            loops.append(self._listen())
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await self._lead(stop)
        finally:
            await cancel_all(tuple(tasks))
            if self.c.election.is_leader:
                await self.release()
        if self.refused is not None:
            raise self.refused

    async def release(self) -> None:
        """Give the lease up now and say so, so another coordinator takes it at once (clean
        stop, or too many held: decision 45). Loops still running find themselves fenced off.
        Logs instead of raising when Redis refuses: the lease then runs out by itself."""
        try:
            await self.c.election.release()
            await self.c.messenger.publish(
                self.c.keys.ch_coordination,
                "leadership_released",
                {"holder": self.c.election.holder_id},
            )
            log.info("released leadership%s", self.where)
        except MultiswarmError as e:
            log.warning("could not release leadership%s: %s", self.where, e)

    async def _contend(self) -> None:
        if self.quota is None:
            await self.c.election.try_acquire()
        elif self.quota.reserve():
            try:
                await self.c.election.try_acquire()
            finally:
                self.quota.unreserve()

    async def _elect(self, stop: asyncio.Event) -> None:
        third = self.c.election.lease_ms / 3000
        while not stop.is_set():
            was_leader = self.c.election.is_leader
            try:
                if was_leader:
                    if not await self.c.election.renew():
                        log.warning("lease lost at renewal%s; stepping down", self.where)
                else:
                    await self._contend()
            except AlreadyExists as e:
                # another process leads under our id: both would pass the fencing check
                self.refused = e
                self.wake.set()
                return
            except RedisUnavailable as e:
                log.warning("election round failed: %s", e)
            except MultiswarmError as e:
                log.warning("election round refused: %s", e)
            if self.c.election.is_leader and not was_leader:
                log.info("elected leader%s, epoch %d", self.where, self.c.election.epoch)
                self.wake.set()
                try:
                    await self.c.messenger.publish(
                        self.c.keys.ch_coordination,
                        "leadership_announcement",
                        {
                            "holder": self.c.election.holder_id,
                            "epoch": self.c.election.epoch,
                            "pid": os.getpid(),
                        },
                    )
                except MultiswarmError as e:  # only news: the lease must still be renewed
                    log.warning("could not announce leadership%s: %s", self.where, e)
            self.contend.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.contend.wait(), timeout=third)

    async def _listen(self) -> None:
        async for _channel, env in self.c.messenger.listen(self.channels):
            self.hear(env)

    @property
    def channels(self) -> list[str]:
        """What wakes this partition's loops: its task and coordination channels."""
        return [self.c.keys.ch_tasks, self.c.keys.ch_coordination]

    def hear(self, env: Delivered) -> None:
        """React to a message of :attr:`channels`: contend at once when another coordinator
        released this lease, run a dispatch round when work may have become placeable."""
        if env.type == "leadership_released" and env.sender != self.c.election.holder_id:
            self.contend.set()
            if self.quota is not None:
                self.quota.recount.set()
        elif env.type in (
            # submissions and finished attempts wake the leader from their scripts
            # (multiswarm.wakeups); these notices come from operator commands
            "task_submitted",  # retried tasks
            "task_cancelled",  # a slot freed
            "swarm_changed",
        ):
            self.wake.set()

    async def _lead(self, stop: asyncio.Event) -> None:
        # a stop also wakes the loop, which then waits on one event (not two Tasks a round)
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self.wake.set())
        try:
            await self._lead_rounds(stop)
        finally:
            stopping.cancel()

    async def _lead_rounds(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and self.refused is None:
            if not self.c.election.is_leader:
                await _wait_wake(self.wake, timeout=0.2)
                self.wake.clear()
                continue
            assigned = 0
            # cleared before the round, not after it: a notice heard during the round (a
            # submission as the last completion's round runs) must start another round at once
            self.wake.clear()
            try:
                assigned = await self.c.dispatch_once()
            except StaleEpoch:
                if self.c.election.epoch:  # else released meanwhile: no surprise
                    log.warning(
                        "fenced off%s (stale epoch %d); stepping down",
                        self.where,
                        self.c.election.epoch,
                    )
                self.c.election.step_down()
                continue
            except MultiswarmError as e:
                log.warning("leader round failed: %s", e)
                await asyncio.sleep(0.2)
                continue
            if assigned < self.c.batch_size and not self.c.more:
                # the round's last call said when the first retry is due
                wait_s = self.c.idle_s(DISPATCH_SAFETY_S)
                await _wait_wake(self.wake, timeout=max(wait_s, 0.05))

    async def _reap(self, stop: asyncio.Event) -> None:
        """The leader's deadline timer, apart from dispatch so that neither stops the other."""
        while not stop.is_set():
            if self.c.election.is_leader:
                try:
                    before = self.c.requeued
                    retried, dead = await self.c.reap_once()
                    requeued = self.c.requeued - before
                    if retried or dead or requeued:
                        self.wake.set()  # slots freed, retries due, dependents to release
                        log.info(
                            "deadlines passed: %d retried, %d dead, %d assignments requeued",
                            retried,
                            dead,
                            requeued,
                        )
                    if retried + dead + requeued >= REAP_LIMIT:
                        continue  # more are due: no pause
                except StaleEpoch:
                    if self.c.election.epoch:  # else released meanwhile: no surprise
                        log.warning(
                            "fenced off while reaping%s (epoch %d); stepping down",
                            self.where,
                            self.c.election.epoch,
                        )
                    self.c.election.step_down()
                except MultiswarmError as e:
                    log.warning("reaping failed: %s", e)
            wait_s = self.c.reap_interval_s
            if self.c.election.is_leader:
                wait_s = await self.c.until_first_due_s(self.c.keys.leases, REAP_SAFETY_S)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait_s, 0.05))


async def cancel_all(tasks: tuple[asyncio.Task[None], ...]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again those still running.

    On Python 3.11 ``asyncio.wait_for`` (which redis-py wraps around every command send when a
    socket timeout is set) drops a cancellation that lands as the send completes; the task then
    runs on, so a single cancel-and-gather could wait forever.
    """
    for _ in range(20):
        pending = [t for t in tasks if not t.done()]
        if not pending:
            break
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=0.5)
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: a loop's own failure is logged where it happened


async def _wait_wake(wake: asyncio.Event, timeout: float) -> None:
    """Until ``wake`` is set (also by a stop: ``_lead``) or ``timeout`` passes."""
    if wake.is_set():
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await wake.wait()
