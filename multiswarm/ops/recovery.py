"""The recovery scripts: three idempotent steps per plan (begin in the namespace slot, record in
the swarm's slot, finish in the namespace slot), each run for many plans in one pipelined round
trip, and the pruning of the records of swarms that are gone."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from multiswarm.errors import ScriptError
from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner


class Begin(msgspec.Struct, frozen=True, kw_only=True):
    """One plan to begin (begin_recovery's ARGV)."""

    plan_id: str
    swarm: str
    interrupted_ms: int
    summary: bytes
    requeue: list[str]


class Begun(msgspec.Struct, frozen=True):
    """begin_recovery's reply: ``begun`` when this call began the plan, else the state it was
    found in (``recovering`` | ``applied`` | ``superseded``), and the tasks it re-queued."""

    state: str
    requeued: list[str]


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One plan's recovery log entry and the state it restores (record_recovery's ARGV)."""

    plan_id: str
    swarm: str
    entry: bytes
    restore: bytes
    checksum: str
    schema: int
    ttl_ms: int
    kept: int


class Recorded(msgspec.Struct, array_like=True, frozen=True):
    """record_recovery's reply: recorded by this call or before, and the state version."""

    now: bool
    version: int


BEGIN = Script("begin_recovery", list[str], request_id=True)
RECORD = Script("record_recovery", Recorded, request_id=True)
FINISH = Script("finish_recovery", str, request_id=True)
PRUNE = Script(
    "prune_recoveries",
    int,
    by_nature="deletes records of swarms that are gone; a repeat finds none",
)


async def begin_recoveries(
    scripts: ScriptRunner, keys: Keys, plans: Sequence[Begin]
) -> list[Begun | ScriptError]:
    """Begin each plan (``interrupted -> recovering``, re-queue its tasks)."""
    calls = [
        (
            [*keys.task_keyset, *keys.swarm_status_all, keys.queue(p.swarm), keys.recoveries],
            [p.plan_id, p.swarm, p.interrupted_ms, p.summary, *p.requeue],
        )
        for p in plans
    ]
    return [
        r if isinstance(r, ScriptError) else Begun(r[0], r[1:])
        for r in await BEGIN.many(scripts, calls)
    ]


async def record_recoveries(
    scripts: ScriptRunner, keys: Keys, records: Sequence[Record]
) -> list[Recorded | ScriptError]:
    """Restore each plan's state and append its recovery log entry."""
    calls = [
        (
            [keys.state(r.swarm), keys.recovery_log(r.swarm)],
            [r.plan_id, r.entry, r.restore, r.checksum, r.schema, r.ttl_ms, r.kept],
        )
        for r in records
    ]
    return await RECORD.many(scripts, calls)


async def finish_recoveries(
    scripts: ScriptRunner, keys: Keys, plans: Sequence[tuple[str, str]]
) -> list[str | ScriptError]:
    """Finish each ``(plan id, swarm)``: ``applied`` | ``superseded`` | ``already``."""
    calls = [
        ([keys.swarms, *keys.swarm_status_all, keys.recoveries], [plan_id, swarm])
        for plan_id, swarm in plans
    ]
    return await FINISH.many(scripts, calls)


async def prune_recoveries(scripts: ScriptRunner, keys: Keys) -> int:
    """Forget the recovery records of swarms that are gone; how many."""
    return await PRUNE(scripts, [keys.index, keys.recoveries], [])
