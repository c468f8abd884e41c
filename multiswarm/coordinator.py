"""SwarmCoordinator: leader election with fencing, and the leader's task distribution.

Election (scripts/lua/acquire_leadership.lua): ``SET NX PX`` on ``{ns}:leader`` with a fencing
epoch from ``INCR {ns}:leader:epoch``, so epochs only grow. The leader renews by compare-and-extend
every third of the lease and steps down when a renewal fails or when its local view of the lease
runs out (measured from *before* the renewal was sent, so a slow reply never extends it). Standbys
try every third of the lease, and at once when a leader announces a clean release. Leader-only
writes (dispatch, lease reaping) carry the epoch; scripts refuse one below the counter
(StaleEpoch), so a leader paused past its lease cannot act after a successor was elected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from typing import Any

from multiswarm.errors import (
    CoordinationError,
    MultiswarmError,
    RedisUnavailable,
    StaleEpoch,
)
from multiswarm.keys import Keys
from multiswarm.messages import LeaderInfo, decode_leader, encode_json
from multiswarm.messenger import SwarmMessenger
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts

log = logging.getLogger(__name__)

#: Task distribution strategies of the leader (see dispatch_tasks.lua).
STRATEGIES = ("least_loaded", "round_robin", "priority", "capability")


class LeaderElection:
    """One contender for the leader lease.

    Parameters
    ----------
    lease_ms:
        Lease length (30 s default, ``--lease-ms`` / ``MULTISWARM_LEASE_MS``).
    holder_id:
        Unique id of this contender (default: host-pid-random).
    """

    def __init__(
        self, scripts: Scripts, keys: Keys, lease_ms: int, holder_id: str | None = None
    ) -> None:
        self.scripts = scripts
        self.keys = keys
        self.lease_ms = lease_ms
        self.holder_id = holder_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.epoch = 0
        self._valid_until = 0.0
        self.terms = 0

    @property
    def is_leader(self) -> bool:
        """True while this contender holds an unexpired lease (by its own monotonic clock)."""
        return self.epoch > 0 and time.monotonic() < self._valid_until

    async def try_acquire(self) -> bool:
        """Take the lease if free (or extend it if already ours). Returns True when leader."""
        sent = time.monotonic()
        info = {"host": socket.gethostname(), "pid": os.getpid()}
        reply = await self.scripts.call(
            "acquire_leadership", [self.keys.leader, self.keys.epoch],
            [self.holder_id, encode_json(info), self.lease_ms])
        epoch = int(reply[0])
        if epoch == 0:
            self._step_down()
            return False
        if epoch != self.epoch:
            self.terms += 1
        self.epoch = epoch
        self._valid_until = sent + self.lease_ms / 1000
        return True

    async def renew(self) -> bool:
        """Compare-and-extend; on failure the caller is no longer leader."""
        if self.epoch == 0:
            return False
        sent = time.monotonic()
        ok = await self.scripts.call(
            "renew_leadership", [self.keys.leader], [self.holder_id, self.epoch, self.lease_ms])
        if int(ok) == 1:
            self._valid_until = sent + self.lease_ms / 1000
            return True
        self._step_down()
        return False

    async def release(self) -> bool:
        """Give the lease up now (clean shutdown) so a standby takes over at once."""
        if self.epoch == 0:
            return False
        ok = await self.scripts.call(
            "release_leadership", [self.keys.leader], [self.holder_id, self.epoch])
        self._step_down()
        return int(ok) == 1

    def _step_down(self) -> None:
        self.epoch = 0
        self._valid_until = 0.0


async def current_leader(scripts: Scripts, keys: Keys) -> tuple[LeaderInfo | None, int]:
    """The leader record and the milliseconds left on its lease (``None, 0`` when vacant)."""
    async def read() -> list[Any]:
        pipe = scripts.client.pipeline(transaction=False)
        pipe.get(keys.leader)
        pipe.pttl(keys.leader)
        return await pipe.execute()
    raw, pttl = await scripts.read(read)
    if raw is None:
        return None, 0
    return decode_leader(raw), max(0, int(pttl))


class SwarmCoordinator:
    """A coordinator process: contends for leadership; as leader, distributes tasks.

    Parameters
    ----------
    strategy:
        One of :data:`STRATEGIES` (``least_loaded`` default).
    batch_size:
        Most tasks assigned per dispatch script call (keeps each Lua run short).
    reap_interval_s:
        How often the leader reaps expired task leases.
    """

    def __init__(
        self,
        scripts: Scripts,
        keys: Keys,
        *,
        lease_ms: int = 30_000,
        strategy: str = "least_loaded",
        batch_size: int = 200,
        reap_interval_s: float = 0.5,
        holder_id: str | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise CoordinationError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")
        self.scripts = scripts
        self.keys = keys
        self.strategy = strategy
        self.batch_size = batch_size
        self.reap_interval_s = reap_interval_s
        self.election = LeaderElection(scripts, keys, lease_ms, holder_id)
        self.registry = SwarmRegistry(scripts, keys)
        self.messenger = SwarmMessenger(scripts.client, keys, sender=self.election.holder_id)
        self._wake = asyncio.Event()
        self._contend = asyncio.Event()
        self.dispatched = 0

    async def dispatch_once(self) -> int:
        """One fenced dispatch batch; returns tasks assigned. Raises StaleEpoch, NotLeader."""
        swarm_ids = await self.registry.swarm_ids("active")
        reply = await self.scripts.call(
            "dispatch_tasks",
            [*self.keys.task_keyset, self.keys.rr_cursor,
             *[self.keys.queue(s) for s in swarm_ids]],
            [self.election.epoch, self.strategy, self.batch_size, 4 * self.batch_size,
             *swarm_ids])
        assigned = int(reply[0])
        if assigned:
            per_swarm: dict[str, int] = {}
            for i in range(2, len(reply), 2):
                sid = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
                per_swarm[sid] = per_swarm.get(sid, 0) + 1
            for sid, count in per_swarm.items():
                await self.messenger.publish(
                    self.keys.ch_tasks, "task_assignment", {"swarm": sid, "count": count},
                    target=sid)
            self.dispatched += assigned
        return assigned

    async def reap_once(self) -> tuple[int, int]:
        """Fail attempts whose lease expired (fenced). Returns (retried, dead)."""
        reply = await self.scripts.call(
            "reap_leases", self.keys.task_keyset,
            [self.election.epoch, 500, random.getrandbits(31)])
        return int(reply[0]), int(reply[1])

    async def run(self, stop: asyncio.Event) -> None:
        """Contend, lead, and on ``stop`` hand leadership over at once."""
        listener = asyncio.create_task(self._listen())
        elector = asyncio.create_task(self._elect(stop))
        try:
            await self._lead(stop)
        finally:
            elector.cancel()
            listener.cancel()
            await asyncio.gather(elector, listener, return_exceptions=True)
            if self.election.is_leader:
                try:
                    await self.election.release()
                    await self.messenger.publish(
                        self.keys.ch_coordination, "leadership_released",
                        {"holder": self.election.holder_id})
                    log.info("released leadership")
                except MultiswarmError as e:
                    log.warning("could not release leadership: %s", e)

    async def _elect(self, stop: asyncio.Event) -> None:
        third = self.election.lease_ms / 3000
        while not stop.is_set():
            was_leader = self.election.is_leader
            try:
                if was_leader:
                    if not await self.election.renew():
                        log.warning("lease lost at renewal; stepping down")
                else:
                    await self.election.try_acquire()
            except RedisUnavailable as e:
                log.warning("election round failed: %s", e)
            except MultiswarmError as e:
                log.warning("election round refused: %s", e)
            if self.election.is_leader and not was_leader:
                log.info("elected leader, epoch %d", self.election.epoch)
                await self.messenger.publish(
                    self.keys.ch_coordination, "leadership_announcement",
                    {"holder": self.election.holder_id, "epoch": self.election.epoch,
                     "pid": os.getpid()})
                self._wake.set()
            self._contend.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._contend.wait(), timeout=third)

    async def _listen(self) -> None:
        async for _channel, env in self.messenger.listen(
            [self.keys.ch_tasks, self.keys.ch_coordination]
        ):
            if env.type == "leadership_released" and env.sender != self.election.holder_id:
                self._contend.set()
            elif env.type in ("task_submitted", "task_completed", "swarm_changed"):
                self._wake.set()

    async def _lead(self, stop: asyncio.Event) -> None:
        last_reap = 0.0
        while not stop.is_set():
            if not self.election.is_leader:
                await _wait_any(stop, self._wake, timeout=0.2)
                self._wake.clear()
                continue
            assigned = 0
            try:
                assigned = await self.dispatch_once()
                if time.monotonic() - last_reap >= self.reap_interval_s:
                    last_reap = time.monotonic()
                    retried, dead = await self.reap_once()
                    if retried or dead:
                        log.info("leases expired: %d retried, %d dead", retried, dead)
            except StaleEpoch:
                log.warning("fenced off (stale epoch %d); stepping down", self.election.epoch)
                self.election._step_down()
                continue
            except MultiswarmError as e:
                log.warning("leader round failed: %s", e)
                await asyncio.sleep(0.2)
                continue
            if assigned < self.batch_size:
                self._wake.clear()
                await _wait_any(stop, self._wake, timeout=0.2)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def leader_report(info: LeaderInfo | None, lease_ms_left: int) -> dict[str, Any]:
    """The ``multiswarm-cli leader --json`` object."""
    if info is None:
        return {"holder": None, "host": None, "pid": None, "epoch": None, "lease_ms_left": 0}
    return {"holder": info.holder, "host": info.host, "pid": info.pid, "epoch": info.epoch,
            "lease_ms_left": lease_ms_left}
