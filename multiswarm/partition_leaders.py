"""Role processes serving every coordination partition (decisions 44 and 45).

A deployment of P partitions runs each role's loops once per partition, in the one process:
:func:`run_partitions` stops them all when one fails, so a partition is never left unserved
while the process looks healthy. Coordinators share the P leader leases
(:class:`PartitionLeaders`): each holds at most ``ceil(P / live coordinators)`` while others are
alive, and takes over a dead one's partitions within the lease-expiry bound of one partition.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence

from multiswarm.coordinator import SwarmCoordinator
from multiswarm.coordinator_process import CoordinatorProcess, LeaseQuota, cancel_all
from multiswarm.errors import MultiswarmError
from multiswarm.keys import Keys
from multiswarm.ops import partitions as ops

log = logging.getLogger(__name__)

#: One partition's loop: runs until the event is set, then finishes its shutdown.
PartitionRun = Callable[[asyncio.Event], Awaitable[None]]


async def run_partitions(
    runs: Sequence[PartitionRun],
    stop: asyncio.Event,
    *,
    leaving: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run every partition's loop until ``stop``, or until one of them ends on its own (an
    error, or a refusal such as :class:`~multiswarm.errors.AlreadyExists`): then the others are
    stopped too and finish their shutdown.

    Parameters
    ----------
    runs:
        One coroutine function per partition.
    leaving:
        Awaited once before the loops are told to stop (a coordinator leaving the membership
        before it releases its leases).

    Raises
    ------
    Exception
        The first error a loop ended with, once every loop has finished.
    """
    inner = asyncio.Event()
    tasks = [asyncio.ensure_future(run(inner)) for run in runs]
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        try:
            if leaving is not None:
                await leaving()
        finally:
            inner.set()
            await asyncio.wait(tasks)
    for t in tasks:
        error = None if t.cancelled() else t.exception()
        if error is not None:
            raise error


class PartitionLeaders:
    """One coordinator process contending for the leader lease of every partition.

    Every partition runs a :class:`~multiswarm.coordinator_process.CoordinatorProcess` (its own election,
    dispatch and deadline timer) under the same holder id; one listener serves them all. A
    membership loop says every third of the lease that this coordinator is alive
    (``coordinators_alive.lua``, membership TTL = the lease) and learns how many are:
    ``live``. The process then tries for a
    vacant lease only while it holds fewer than ``ceil(P / live)``; holding more (another
    coordinator joined) it releases its highest-numbered partition, one per tick, announcing it
    on that partition's coordination channel so another coordinator takes it at once.

    Parameters
    ----------
    coordinators:
        One per partition, partition ``k`` at index ``k``, all with the same holder id and
        lease.
    control:
        Keys of partition 0, where the membership is kept.
    """

    def __init__(self, coordinators: Sequence[SwarmCoordinator], control: Keys) -> None:
        self.quota = LeaseQuota(len(coordinators))
        self.processes = [CoordinatorProcess(c, self.quota) for c in coordinators]
        first = coordinators[0]
        self.scripts = first.scripts
        self.control = control
        self.holder = first.election.holder_id
        self.lease_ms = first.election.lease_ms
        #: live coordinators at the last count (this one included)
        self.live = 1

    async def run(self, stop: asyncio.Event) -> None:
        """Lead partitions until ``stop``, then leave the membership and release every lease
        held, so the others take them over at once.

        Raises
        ------
        AlreadyExists
            Another live process leads a partition under this holder id.
        """
        await self.tick()  # before contending: two starting together split the partitions
        member_stop = asyncio.Event()
        member = asyncio.create_task(self._membership(member_stop))

        async def watch(partition_stop: asyncio.Event) -> None:
            # the membership loop failing (a bug) ends the role like a partition's would
            stopping = asyncio.ensure_future(partition_stop.wait())
            await asyncio.wait([member, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if member.done() and not member.cancelled():
                member.result()

        async def leaving() -> None:
            member_stop.set()
            await asyncio.wait([member])  # its error, if any, is watch's to raise
            if any(p.refused for p in self.processes):
                return  # the membership is the other process's, which runs on
            try:
                await ops.coordinators_alive(
                    self.scripts, self.control, self.holder, self.lease_ms, alive=False
                )
            except MultiswarmError as e:
                log.warning("could not leave the coordinators' membership: %s", e)

        try:
            runs = [p.run for p in self.processes]
            await run_partitions([*runs, watch, self._listening], stop, leaving=leaving)
        finally:
            member_stop.set()
            member.cancel()
            await asyncio.wait([member])

    async def _listening(self, stop: asyncio.Event) -> None:
        # one subscription for every partition's channels, not one connection per partition
        route = {ch: p for p in self.processes for ch in p.channels}

        async def listen() -> None:
            async for channel, env in self.processes[0].c.messenger.listen(list(route)):
                route[channel].hear(env)

        listener = asyncio.ensure_future(listen())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([listener, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if listener.done():
            listener.result()  # raises what ended it: the role ends too
        await cancel_all((listener,))

    async def _membership(self, stop: asyncio.Event) -> None:
        third = self.lease_ms / 3000
        recount = self.quota.recount
        while not stop.is_set():
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(recount.wait())]
            try:
                await asyncio.wait(waiters, timeout=third, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            recount.clear()  # before the count: a release seen during it counts again after
            if not stop.is_set():
                await self.tick()

    async def tick(self) -> None:
        """Renew this coordinator's membership, set the quota from the live count, and release
        one lease when more are held than the quota (logs instead of raising)."""
        try:
            live = await ops.coordinators_alive(
                self.scripts, self.control, self.holder, self.lease_ms
            )
        except MultiswarmError as e:
            log.warning("membership round failed: %s", e)
            return
        if live != self.live:
            log.info("%d coordinators alive: at most %d partitions each", live, self._cap(live))
        self.live = max(1, live)
        cap = self._cap(self.live)
        if cap > self.quota.cap:
            # a coordinator left: try its partitions now, not at the next election round
            for p in self.processes:
                if not p.c.election.is_leader:
                    p.contend.set()
        self.quota.cap = cap
        held = [p for p in self.processes if p.c.election.is_leader]
        if len(held) > cap:
            await held[-1].release()

    def _cap(self, live: int) -> int:
        return math.ceil(len(self.processes) / max(1, live))
