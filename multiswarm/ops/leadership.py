"""The leader's scripts: the election lease, and the fenced task distribution rounds.

Fenced scripts take the leader key and the caller's :class:`Fence` (epoch, holder id, holder
instance): a deposed leader is refused (``STALE_EPOCH``, lib/01_common.lua ``check_epoch``).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner


class Fence(msgspec.Struct, frozen=True):
    """Who leads: the epoch it was elected with, its holder id and process instance."""

    epoch: int
    holder: str
    instance: str


class Acquired(msgspec.Struct, array_like=True, frozen=True):
    """acquire_leadership's reply: ``epoch`` 0 and the current holder when another leads,
    else this holder's epoch and ``acquired`` | ``held``."""

    epoch: int
    detail: str


class Assignment(msgspec.Struct, array_like=True, frozen=True):
    swarm_id: str
    task_id: str


class Dispatched(msgspec.Struct, array_like=True, frozen=True):
    """dispatch_tasks' reply; ``more`` when calling again at once would do more;
    ``parked_sets`` the parked index's fields after the call (what to pass next time);
    ``first_due_ms`` ms until the first delayed task is due (-1: none; the two trail, so a reply
    recorded by an older version still decodes)."""

    assigned: int
    promoted: int
    parked: int
    more: bool
    assignments: list[Assignment]
    parked_sets: list[str] = []
    first_due_ms: int = -1


class Reaped(msgspec.Struct, array_like=True, frozen=True):
    """reap_leases' reply: expired leases retried and dead-lettered, assignments requeued."""

    retried: int
    dead: int
    requeued: int


ACQUIRE = Script("acquire_leadership", Acquired, request_id=True, durable=True)
RENEW = Script(
    "renew_leadership",
    bool,
    by_nature="compare-and-extend by holder and epoch; a repeat extends again",
)
RELEASE = Script("release_leadership", bool, request_id=True)
DISPATCH = Script("dispatch_tasks", Dispatched, request_id=True, durable=True)
#: Task distribution strategies of the leader, as dispatch_tasks.lua names them (kept here, with
#: the call, so that naming them imports no coordinator: decision 85).
STRATEGIES = ("least_loaded", "round_robin", "priority", "capability")
REAP = Script(
    "reap_leases",
    Reaped,
    by_nature="fenced periodic sweep: a repeat finds the expired leases already handled "
    "and its counts only feed a log line",
    durable=True,
)


async def acquire_leadership(
    scripts: ScriptRunner, keys: Keys, holder: str, info: bytes, lease_ms: int
) -> Acquired:
    """Take the lease if free, or extend it if this holder has it. Raises AlreadyExists."""
    return await ACQUIRE(scripts, [keys.leader, keys.epoch], [holder, info, lease_ms])


async def renew_leadership(scripts: ScriptRunner, keys: Keys, fence: Fence, lease_ms: int) -> bool:
    """True when the lease was extended."""
    return await RENEW(
        scripts, [keys.leader], [fence.holder, fence.epoch, lease_ms, fence.instance]
    )


async def release_leadership(scripts: ScriptRunner, keys: Keys, fence: Fence) -> bool:
    """True when this holder had the lease and gave it up."""
    return await RELEASE(scripts, [keys.leader], [fence.holder, fence.epoch, fence.instance])


async def dispatch_tasks(
    scripts: ScriptRunner,
    keys: Keys,
    fence: Fence,
    *,
    strategy: str,
    batch: int,
    scan: int,
    assign_timeout_ms: int,
    heartbeat_timeout_ms: int,
    capsets: Sequence[str],
    wake: tuple[str, int] | None = None,
) -> tuple[str | None, Dispatched]:
    """One bounded dispatch round over the parked sets ``capsets`` (the parked index's fields:
    a capability set, or ``CAPSET|HANDLER`` for tasks whose handler a swarm covering the set may
    not run). Swarms come from the dispatch index the registry scripts keep, not the caller.

    ``wake`` (entry id, ms): run once the partition's leader wake-up stream
    (:attr:`~multiswarm.keys.Keys.wake_leader`) has an entry after that id, or after that
    many ms (:meth:`multiswarm.scripts.Scripts.call_when_woken`). Returns the newest entry id
    read (None: none, or no ``wake``) and the round's outcome."""
    return await DISPATCH.call(
        scripts,
        [
            *keys.task_keyset,
            keys.rr_cursor,
            keys.leader,
            keys.parked_index,
            *[keys.parked(c) for c in capsets],
        ],
        [
            fence.epoch,
            fence.holder,
            fence.instance,
            strategy,
            batch,
            scan,
            assign_timeout_ms,
            heartbeat_timeout_ms,
            len(capsets),
            *capsets,
        ],
        wake=None if wake is None else (keys.wake_leader, *wake),
    )


async def reap_leases(
    scripts: ScriptRunner,
    keys: Keys,
    fence: Fence,
    *,
    limit: int,
    seed: int,
    assign_timeout_ms: int,
    heartbeat_timeout_ms: int,
    blind_gap_ms: int,
) -> Reaped:
    """Act on passed lease and assignment deadlines (at most ``limit``); calls further apart
    than ``blind_gap_ms`` had Redis blind in between (decision 114)."""
    return await REAP(
        scripts,
        [*keys.task_keyset, keys.leader, keys.sweep_clock("leases")],
        [
            fence.epoch,
            fence.holder,
            fence.instance,
            limit,
            seed,
            assign_timeout_ms,
            heartbeat_timeout_ms,
            blind_gap_ms,
        ],
    )
