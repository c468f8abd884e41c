"""SwarmCoordinator: leader election with fencing, and the leader's task distribution.

Election (scripts/lua/acquire_leadership.lua): ``SET NX PX`` on ``{ns}:leader`` with a fencing
epoch from ``INCR {ns}:leader:epoch``, so epochs only grow. The leader renews by compare-and-extend
every third of the lease and steps down when a renewal fails or when its local view of the lease
runs out (measured from *before* the renewal was sent, so a slow reply never extends it). Standbys
try every third of the lease, and at once when a leader announces a clean release. Leader-only
writes (dispatch, lease reaping) carry the epoch and the holder; scripts refuse an epoch below the
counter, and a lease that does not name this holder, process instance and epoch (StaleEpoch), so
a leader paused past its lease cannot act after a successor was elected, even when the counter
rolled back (failover to a lagging replica, AOF ``everysec`` loss) and both hold one epoch.
Each lease records the process instance that took it: a second process started with the same
``--id`` is refused (AlreadyExists) instead of leading alongside the first.
The process loops (election, dispatch, deadline timer) are
:func:`multiswarm.coordinator_process.run_coordinator`; this module offers the rounds they run.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from typing import Any

import redis.exceptions

from multiswarm.errors import CoordinationError, MultiswarmError
from multiswarm.keys import Keys
from multiswarm.messages import LeaderInfo, decode_leader, encode_json
from multiswarm.messenger import SwarmMessenger
from multiswarm.ops import leadership as ops
from multiswarm.ops.leadership import STRATEGIES, Fence
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts

log = logging.getLogger(__name__)


#: Most dispatch script calls in one round. Each call examines at most 4 x its batch ready tasks
#: and every call that asks for more has parked, assigned or dropped some (or met a new
#: capability set, whose tasks the next call parks), so a round ends; this only bounds it.
DISPATCH_CALLS_PER_ROUND = 256

#: Most tasks one dispatch script call assigns: each assignment writes the task record, its
#: indexes and event (tens of µs), so a call stays within a few ms whatever the round's batch.
DISPATCH_CALL_BATCH = 32

#: Most lease deadlines handled per reap_leases call.
REAP_LIMIT = 500

#: Reap calls further apart than this, in ms of Redis time, had Redis blind in between
#: (decision 114): twice the deadline timer's longest pause (coordinator_process.REAP_SAFETY_S).
BLIND_GAP_MS = 4_000


def default_holder_id() -> str:
    """A coordinator id unique to this process: ``<host>-<pid>-<6 hex digits>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LeaderElection:
    """One contender for the leader lease.

    Parameters
    ----------
    lease_ms:
        Lease length (30 s default, ``--lease-ms`` / ``MULTISWARM_LEASE_MS``).
    holder_id:
        Unique id of this contender (default: host-pid-random). A second process using an id
        whose lease is live is refused (:class:`~multiswarm.errors.AlreadyExists`).
    """

    def __init__(
        self, scripts: Scripts, keys: Keys, lease_ms: int, holder_id: str | None = None
    ) -> None:
        self.scripts = scripts
        self.keys = keys
        self.lease_ms = lease_ms
        self.holder_id = holder_id or default_holder_id()
        #: Tells this contender from another process started with the same ``holder_id``.
        self.instance = uuid.uuid4().hex
        self.epoch = 0
        self._valid_until = 0.0
        self.terms = 0
        #: True while an acquire may have taken the lease without this contender knowing (its
        #: reply not read: in flight, cancelled, or lost): :meth:`release` then gives it back
        self.in_doubt = False

    @property
    def is_leader(self) -> bool:
        """True while this contender holds an unexpired lease (by its own monotonic clock)."""
        return self.epoch > 0 and time.monotonic() < self._valid_until

    async def try_acquire(self) -> bool:
        """Take the lease if free (or extend it if already ours). Returns True when leader.

        Raises
        ------
        AlreadyExists
            A live lease names this ``holder_id`` but was taken by another process.
        """
        sent = time.monotonic()
        info = {"host": socket.gethostname(), "pid": os.getpid(), "instance": self.instance}
        self.in_doubt = True
        reply = await ops.acquire_leadership(
            self.scripts, self.keys, self.holder_id, encode_json(info), self.lease_ms
        )
        self.in_doubt = False
        epoch = reply.epoch
        if epoch == 0:
            self.step_down()
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
        if await ops.renew_leadership(self.scripts, self.keys, self.fence, self.lease_ms):
            self._valid_until = sent + self.lease_ms / 1000
            return True
        self.step_down()
        return False

    async def release(self) -> bool:
        """Give the lease up now (clean shutdown) so a standby takes over at once; also one an
        acquire whose reply was never read may have taken (``in_doubt``: matched by holder and
        instance, any epoch). True when a lease was released."""
        if self.epoch == 0 and not self.in_doubt:
            return False
        # in doubt, the epoch it holds may be an older term's (its lease ran out, then the
        # acquire took a new one): 0 matches any epoch by holder and instance
        fence = Fence(0, self.holder_id, self.instance) if self.in_doubt else self.fence
        released = await ops.release_leadership(self.scripts, self.keys, fence)
        self.in_doubt = False
        self.step_down()
        return released

    @property
    def fence(self) -> Fence:
        """What fenced scripts check: this contender's epoch, holder id and instance."""
        return Fence(self.epoch, self.holder_id, self.instance)

    def step_down(self) -> None:
        """Stop acting as leader now (the lease was lost, or a fenced script refused)."""
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
        Most tasks assigned per dispatch round, by script calls of at most
        :data:`DISPATCH_CALL_BATCH` each; a call examines at most four times as many ready
        tasks (keeps each Lua run short).
    reap_interval_s:
        How often the leader handles passed deadlines (expired task leases, unclaimed
        assignments), on its own timer: a failing dispatch does not stop it.
    assign_timeout_ms:
        Assignment deadline: a task assigned to a swarm and unclaimed this long is looked at
        again; it goes back to ready (attempt not counted) unless its swarm is active with a
        live host (reap_leases.lua). Covers deployments where no registry process runs.
    heartbeat_timeout_ms:
        A swarm none of whose hosts beat within this long gets no tasks and keeps none past
        their deadline (``HEARTBEAT_INTERVAL``; 0: any host the registry lists counts).
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
        assign_timeout_ms: int = 30_000,
        heartbeat_timeout_ms: int = 0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise CoordinationError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")
        self.scripts = scripts
        self.keys = keys
        self.strategy = strategy
        self.batch_size = batch_size
        self.reap_interval_s = reap_interval_s
        self.assign_timeout_ms = assign_timeout_ms
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        #: reap calls further apart than this (ms) had Redis blind in between (decision 114)
        self.blind_gap_ms = BLIND_GAP_MS
        self.election = LeaderElection(scripts, keys, lease_ms, holder_id)
        self.registry = SwarmRegistry(scripts, keys)
        self.messenger = SwarmMessenger(scripts.client, keys, sender=self.election.holder_id)
        #: True when the last dispatch round stopped with work left (call again at once).
        self.more = False
        self.dispatched = 0
        #: ms until the first delayed task is due, from the last dispatch call (-1: none)
        self.first_due_ms = -1
        self._parked: list[str] = []
        #: Assigned tasks put back to ready when their assignment deadline passed.
        self.requeued = 0
        #: id of the last entry of the leader's wake-up stream seen ("0-0": any entry wakes)
        self._wake_cursor = "0-0"

    async def dispatch_once(self) -> int:
        """One fenced dispatch round; returns tasks assigned (at most ``batch_size``).

        Calls dispatch_tasks.lua until it has nothing more to do now: tasks no swarm can take
        are parked per capability set on the way, so whatever waits ahead, a placeable task is
        assigned within the round. Raises StaleEpoch.
        """
        total, self.more = 0, False
        for _ in range(DISPATCH_CALLS_PER_ROUND):
            assigned, more, _ = await self._dispatch_call(
                min(DISPATCH_CALL_BATCH, self.batch_size - total)
            )
            total += assigned
            self.more = more
            if not more or total >= self.batch_size:
                break
        return total

    @property
    def can_dispatch_when_woken(self) -> bool:
        """Whether :meth:`dispatch_when_woken` may be used (a plain or Sentinel client)."""
        return self.scripts.can_call_when_woken("dispatch_tasks")

    async def dispatch_when_woken(self, block_ms: int) -> tuple[bool, int]:
        """One fenced dispatch call, run by Redis as soon as the partition's wake-up stream
        (:attr:`~multiswarm.keys.Keys.wake_leader`: submissions, freed slots, retries) has an
        entry this leader has not seen, or after ``block_ms`` (its safety net): no round trip
        to this process between a submission and its dispatch. Returns (woken by an entry,
        tasks assigned); :attr:`more` says whether to call again at once. Raises StaleEpoch."""
        assigned, self.more, woken = await self._dispatch_call(
            DISPATCH_CALL_BATCH, (self._wake_cursor, block_ms)
        )
        if woken is not None:
            self._wake_cursor = woken
        return woken is not None, assigned

    async def _dispatch_call(
        self, batch: int, wake: tuple[str, int] | None = None
    ) -> tuple[int, bool, str | None]:
        # the parked sets come back with each reply (one round trip per call, not two); a set
        # that appeared since is passed in the next call, which the reply then asks for
        parked = self._parked
        woken, reply = await ops.dispatch_tasks(
            self.scripts,
            self.keys,
            self.election.fence,
            strategy=self.strategy,
            batch=batch,
            scan=4 * min(self.batch_size, DISPATCH_CALL_BATCH),
            assign_timeout_ms=self.assign_timeout_ms,
            heartbeat_timeout_ms=self.heartbeat_timeout_ms,
            capsets=parked,
            wake=wake,
        )
        # the script woke the hosts of each swarm it gave tasks to (multiswarm.wakeups)
        self._parked = sorted(reply.parked_sets)
        self.first_due_ms = reply.first_due_ms
        self.dispatched += reply.assigned
        return reply.assigned, reply.more or not set(self._parked) <= set(parked), woken

    def idle_s(self, cap_s: float) -> float:
        """Seconds the leader may wait for a wake-up after a round with nothing more to do:
        until the first delayed task (a retry) is due, by the last dispatch call's reply,
        within ``[0, cap_s]``."""
        if self.first_due_ms < 0:
            return cap_s
        return min(cap_s, self.first_due_ms / 1000)

    async def until_first_due_s(self, zset: str, cap_s: float) -> float:
        """Seconds until the earliest score (a deadline, ms since the epoch) in ``zset``, within
        ``[0, cap_s]``; ``cap_s`` when it is empty or cannot be read (the caller's round will
        say). Redis's clock and ours may differ a little: the cap bounds what that costs."""
        client = self.scripts.client
        try:
            first = await self.scripts.read(lambda: client.zrange(zset, 0, 0, withscores=True))
        except (MultiswarmError, redis.exceptions.RedisError):  # (CLUSTERDOWN, NOPERM: a reply)
            return cap_s
        if not first:
            return cap_s
        return max(0.0, min(cap_s, float(first[0][1]) / 1000 - time.time()))

    async def reap_once(self) -> tuple[int, int]:
        """Handle passed deadlines (fenced): expired leases fail their attempt, unclaimed
        assignments of swarms without a live host go back to ready (counted in
        :attr:`requeued`).

        Returns (retried, dead) of the expired leases. Raises StaleEpoch.
        """
        reply = await ops.reap_leases(
            self.scripts,
            self.keys,
            self.election.fence,
            limit=REAP_LIMIT,
            seed=random.getrandbits(31),
            assign_timeout_ms=self.assign_timeout_ms,
            heartbeat_timeout_ms=self.heartbeat_timeout_ms,
            blind_gap_ms=self.blind_gap_ms,
        )
        self.requeued += reply.requeued
        return reply.retried, reply.dead
