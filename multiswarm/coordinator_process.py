"""The coordinator process's loops: contend for each partition's leadership, dispatch while
leading, reap passed deadlines, and hand leadership over on stop.

:class:`CoordinatorProcess` drives one :class:`~multiswarm.coordinator.SwarmCoordinator`
(which only offers single rounds: ``dispatch_once``, ``reap_once``...); :mod:`multiswarm.roles`
runs it as a process, :mod:`multiswarm.partition_leaders` one per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from multiswarm.coordinator import REAP_LIMIT, SwarmCoordinator
from multiswarm.envelopes import Delivered
from multiswarm.errors import AlreadyExists, MultiswarmError, RedisUnavailable, StaleEpoch
from multiswarm.wakeups import wake_on

log = logging.getLogger(__name__)


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
        #: the loops :meth:`run` started (a wake-up subscription may join them)
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = False
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
        loops = {"election": self._elect(stop), "reaping": self._reap(stop)}
        if self.quota is None:  # else the process listens once for all its partitions
            loops["notice"] = self._listen()
        self._tasks = [asyncio.create_task(loop, name=name) for name, loop in loops.items()]
        self._woken_calls()  # subscribes now when the leader cannot wait in its calls
        lead = asyncio.create_task(self._lead(stop))
        watched = {lead, *self._tasks}
        try:
            while not lead.done():
                done, watched = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                for t in done - {lead}:
                    if not t.cancelled() and (exc := t.exception()) is not None:
                        # a loop ended on an error ends the process (decision 45): reaping or
                        # contending gone silently would strand tasks or leave no leader
                        log.error("coordinator%s: its %s loop failed", self.where, t.get_name())
                        raise exc
            await lead
        finally:
            await cancel_all((lead, *self._tasks))
            if self.c.election.is_leader or self.c.election.in_doubt:
                await self.release()
        if self.refused is not None:
            raise self.refused

    async def release(self) -> None:
        """Give the lease up now and say so, so another coordinator takes it at once (clean
        stop, or too many held: decision 45). Loops still running find themselves fenced off.
        Logs instead of raising when Redis refuses: the lease then runs out by itself."""
        try:
            if not await self.c.election.release():
                return  # (an acquire in doubt had taken nothing, or the lease ran out)
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

    def _woken_calls(self) -> bool:
        """Whether an idle leader waits inside its next dispatch call
        (:meth:`~multiswarm.coordinator.SwarmCoordinator.dispatch_when_woken`: submissions and
        finished attempts wake it from their scripts by an entry on the partition's wake-up
        stream). Else, or once the server refuses that (an ACL without ``XREAD``), it is woken
        by their ``PUBLISH`` (:func:`~multiswarm.wakeups.wake_on`), subscribed from then on."""
        if self.c.can_dispatch_when_woken:
            return True
        if not self._subscribed and self._tasks:  # (loops run: not a test's bare _lead)
            self._subscribed = True
            wake = {self.c.keys.wake_leader: self.wake}
            self._tasks.append(
                asyncio.create_task(wake_on(self.c.scripts.client, self.c.keys, wake))
            )
        return False

    async def _lead_rounds(self, stop: asyncio.Event) -> None:
        idle = False  # the last round left nothing to do now: wait for a wake-up
        while not stop.is_set() and self.refused is None:
            if not self.c.election.is_leader:
                await _wait_wake(self.wake, timeout=0.2)
                self.wake.clear()
                idle = False
                continue
            assigned = 0
            # cleared before the round, not after it: a notice heard during the round (a
            # submission as the last completion's round runs) must start another round at once
            self.wake.clear()
            woken = self._woken_calls()
            epoch = self.c.election.epoch  # the term this round's calls are fenced with
            try:
                if idle and woken:
                    got = await self._dispatch_when_woken()
                    if got is None:  # a notice of this process (reaper, operator, stop)
                        idle = False
                        continue
                    assigned = got
                else:
                    assigned = await self.c.dispatch_once()
            except StaleEpoch:
                self._fenced_off("", epoch)
                idle = False
                continue
            except MultiswarmError as e:
                log.warning("leader round failed: %s", e)
                await asyncio.sleep(0.2)
                idle = False
                continue
            # a notice heard during the round (self.wake) starts another at once
            idle = assigned < self.c.batch_size and not self.c.more and not self.wake.is_set()
            if idle and not woken:
                # the round's last call said when the first retry is due
                wait_s = self.c.idle_s(DISPATCH_SAFETY_S)
                await _wait_wake(self.wake, timeout=max(wait_s, 0.05))

    async def _dispatch_when_woken(self) -> int | None:
        """One dispatch call that Redis runs when the wake-up stream has news, or when the
        first retry is due (:data:`DISPATCH_SAFETY_S` at most); tasks assigned, or None when
        a notice of this process (:attr:`wake`) came first: the call is then abandoned (its
        connection closed: a dispatch that ran meanwhile assigned and woke as any does) and a
        round follows at once."""
        wait_ms = int(max(self.c.idle_s(DISPATCH_SAFETY_S), 0.05) * 1000)
        call = asyncio.ensure_future(self.c.dispatch_when_woken(wait_ms))
        notice = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait([call, notice], return_when=asyncio.FIRST_COMPLETED)
        finally:
            notice.cancel()
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, MultiswarmError):
                    await call
        if call.cancelled():
            return None
        return call.result()[1]

    def _fenced_off(self, doing: str, epoch: int) -> None:
        """A fenced call sent under ``epoch`` was refused (StaleEpoch): step down, unless this
        process holds another term by now (a dispatch waiting in Redis for up to
        :data:`DISPATCH_SAFETY_S` can outlive the lease it was sent under, lost and won again
        meanwhile) or released the lease itself."""
        if not epoch or self.c.election.epoch != epoch:
            return
        log.warning("fenced off%s%s (epoch %d); stepping down", doing, self.where, epoch)
        self.c.election.step_down()

    async def _reap(self, stop: asyncio.Event) -> None:
        """The leader's deadline timer, apart from dispatch so that neither stops the other."""
        while not stop.is_set():
            if self.c.election.is_leader:
                epoch = self.c.election.epoch
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
                    self._fenced_off(" while reaping", epoch)
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
