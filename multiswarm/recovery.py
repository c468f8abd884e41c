"""Recovery of interrupted swarms: discover, plan (a dry run), apply (idempotent).

Planning reads, for a batch of swarms, in a few pipelined round trips: the registry records, the
workers alive, every running task, and per swarm its current state, newest checkpoint, newest
snapshot and queue. Sources are tried in the order state -> checkpoint -> snapshot; each is
decoded and verified (:func:`multiswarm.state_codec.verify_state`, ``verify_entry``) and a
corrupted entry is reported, or, when the plan is made to be applied, moved to the swarm's
quarantine list and the next entry or source is tried. The plan itself is built by
:func:`multiswarm.recovery_plan.build_plan`; confidence follows :mod:`multiswarm.confidence`.

Applying a plan is three idempotent steps (:mod:`multiswarm.recovery_apply`), because the registry
and tasks live in the namespace's hash slot while the recovery log and state live in the swarm's
slot. A crash between steps leaves the swarm ``recovering`` with its plan recorded;
:meth:`SwarmRecovery.discover` returns it and applying again finishes it without re-queueing.
The plan id is ``<swarm>@<ms the swarm became interrupted>.<recoveries so far>``, the same for
every planner of one interruption, so an operator and the state-manager process cannot both
apply it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from multiswarm.connection import Client, server_time_ms
from multiswarm.errors import (
    CorruptState,
    InvalidArgumentError,
    LowConfidence,
    MessageDecodeError,
    MultiswarmError,
    NotFound,
    NotInterrupted,
    RecoveryError,
)
from multiswarm.keys import Keys, check_id
from multiswarm.messages import Swarm, Task, decode_swarm, decode_task
from multiswarm.ops.recovery import prune_recoveries
from multiswarm.ops.script import decode
from multiswarm.recovery_apply import PlanApplier
from multiswarm.recovery_plan import (
    PlanFacts,
    RecoveryOutcome,
    RecoveryPlan,
    Rejected,
    build_plan,
    plan_record,
    to_plan,
)
from multiswarm.scripts import Scripts
from multiswarm.state_codec import (
    SOURCE_KINDS,
    STATE_FIELDS,
    RecoveryPoint,
    verify_entry,
    verify_state,
)

__all__ = ["RecoveryOutcome", "RecoveryPlan", "StateStore", "SwarmRecovery"]

T = TypeVar("T")

#: Swarms whose sources are read per pipelined round trip.
PLAN_CHUNK = 250


class StateStore(Protocol):
    """What recovery uses of :class:`~multiswarm.state.SwarmStateManager`.

    A protocol rather than an import: recovery needs only these few members, and tests and
    benchmarks may pass any store that has them.
    """

    scripts: Scripts
    keys: Keys
    client: Client
    ttl_ms: int

    async def read(self, fn: Callable[[], Awaitable[T]]) -> T: ...

    async def quarantine_state(self, swarm_id: str, version: int | str, reason: str) -> bool: ...

    async def quarantine_entry(
        self, swarm_id: str, kind: str, raw: bytes | str, reason: str
    ) -> bool: ...


class SwarmRecovery:
    """Plans and applies recoveries through a :class:`~multiswarm.state.SwarmStateManager`.

    Parameters
    ----------
    manager:
        Gives the client, scripts, keys, TTL and quarantine (any :class:`StateStore`).
    actor:
        Who applies (recorded in the recovery log), default ``<host>-<pid>``.
    """

    def __init__(self, manager: StateStore, actor: str = "") -> None:
        self.manager = manager
        self.scripts = manager.scripts
        self.keys = manager.keys
        self.client = manager.client
        self.actor = actor or f"{socket.gethostname()}-{os.getpid()}"

    # -- reading -------------------------------------------------------------------------------
    async def _pipe(self, fill: Callable[[Any], Awaitable[None]]) -> list[Any]:
        """One pipeline of reads (:meth:`~multiswarm.scripts.Scripts.pipelined`)."""
        return await self.scripts.pipelined(fill)

    async def discover(self) -> list[str]:
        """Ids of swarms to recover: ``interrupted``, plus ``recovering`` ones whose recorded
        plan never finished. Sorted."""

        async def fill(pipe: Any) -> None:
            pipe.smembers(self.keys.swarm_status("interrupted"))
            pipe.smembers(self.keys.swarm_status("recovering"))

        interrupted, recovering = await self._pipe(fill)
        ids = set(decode(interrupted, list[str]))
        stuck = sorted(decode(recovering, list[str]))
        if stuck:
            raws = await self.manager.read(lambda: self.client.hmget(self.keys.recoveries, stuck))
            for sid, raw in zip(stuck, raws):
                rec = plan_record(raw)
                if rec.get("state") == "recovering":
                    ids.add(sid)
        return sorted(ids)

    async def plan(
        self, swarm_id: str, source: str | None = None, quarantine: bool = False
    ) -> RecoveryPlan:
        """Plan one swarm's recovery (see :meth:`plan_many`).

        Raises
        ------
        NotFound, NotInterrupted, NoRecoverySource
        """
        result = (await self.plan_many([swarm_id], source=source, quarantine=quarantine))[swarm_id]
        if isinstance(result, MultiswarmError):
            raise result
        return result

    async def plan_many(
        self, swarm_ids: Sequence[str], source: str | None = None, quarantine: bool = False
    ) -> dict[str, RecoveryPlan | MultiswarmError]:
        """Plan the recovery of many swarms in a few round trips.

        Parameters
        ----------
        source:
            Use only this kind (``state`` | ``checkpoint`` | ``snapshot``); default: the first
            valid in that order.
        quarantine:
            Move corrupted entries to quarantine (when the plan is made to be applied); a dry
            run only reports them.

        Returns
        -------
        dict
            Swarm id -> plan, or the error for that swarm (NotFound, NotInterrupted,
            NoRecoverySource).
        """
        if source is not None and source not in SOURCE_KINDS:
            raise InvalidArgumentError(f"unknown source {source!r}; one of {SOURCE_KINDS}")
        ids = [check_id(s, "swarm id") for s in dict.fromkeys(swarm_ids)]
        out: dict[str, RecoveryPlan | MultiswarmError] = {}
        if not ids:
            return out

        async def first(pipe: Any) -> None:
            pipe.hmget(self.keys.swarms, ids)
            pipe.hmget(self.keys.recoveries, ids)
            pipe.hkeys(self.keys.workers)
            pipe.zrange(self.keys.leases, 0, -1)

        # TIME on its own: a cluster pipeline refuses it (no key, so no node to send it to)
        now_ms = await self.manager.read(lambda: server_time_ms(self.client))
        raw_swarms, raw_recs, workers, leased = await self._pipe(first)
        live = set(decode(workers, list[str]))
        todo: list[tuple[Swarm, dict[str, Any]]] = []
        for sid, raw, raw_rec in zip(ids, raw_swarms, raw_recs):
            if raw is None:
                out[sid] = NotFound("NOT_FOUND", f"swarm {sid}")
                continue
            try:
                swarm = decode_swarm(raw)
            except MessageDecodeError as e:
                out[sid] = e
                continue
            rec = plan_record(raw_rec)
            resuming = swarm.status == "recovering" and rec.get("state") == "recovering"
            if swarm.status != "interrupted" and not resuming:
                out[sid] = NotInterrupted("NOT_INTERRUPTED", f"{sid} is {swarm.status}")
                continue
            todo.append((swarm, rec))

        lease_ids = decode(leased, list[str])
        running = [t for t in (await self._tasks(lease_ids)).values() if t is not None]
        for start in range(0, len(todo), PLAN_CHUNK):
            chunk = todo[start : start + PLAN_CHUNK]
            plans = await self._plan_chunk(chunk, live, running, now_ms, source, quarantine)
            out.update(plans)
        return out

    async def _tasks(self, ids: Sequence[str]) -> dict[str, Task | None]:
        if not ids:
            return {}
        raws = await self.manager.read(lambda: self.client.hmget(self.keys.tasks, list(ids)))
        out: dict[str, Task | None] = {}
        for tid, raw in zip(ids, raws):
            try:
                out[tid] = decode_task(raw) if raw is not None else None
            except MessageDecodeError:
                out[tid] = None  # an unreadable record is an incomplete definition
        return out

    async def _plan_chunk(
        self,
        chunk: list[tuple[Swarm, dict[str, Any]]],
        live: set[str],
        running: list[Task],
        now_ms: int,
        source: str | None,
        quarantine: bool,
    ) -> dict[str, RecoveryPlan | MultiswarmError]:
        keys = self.keys

        async def read(pipe: Any) -> None:
            for swarm, _ in chunk:
                pipe.hmget(keys.state(swarm.id), STATE_FIELDS)
                pipe.lrange(keys.checkpoints(swarm.id), 0, 0)
                pipe.lrange(keys.snapshots(swarm.id), 0, 0)
                pipe.zrange(keys.queue(swarm.id), 0, -1)

        raw = await self._pipe(read)
        per_swarm: dict[str, tuple[dict[str, RecoveryPoint], list[Rejected], list[str]]] = {}
        out: dict[str, RecoveryPlan | MultiswarmError] = {}
        for i, (swarm, _) in enumerate(chunk):
            fields, ckpt, snap, queue = raw[4 * i : 4 * i + 4]
            wrong = next((r for r in raw[4 * i : 4 * i + 4] if isinstance(r, Exception)), None)
            if wrong is not None:
                # a key of the swarm's that holds another type (hand-edited): this swarm's
                # answer, not the others' (the pipeline gives each reply in place)
                out[swarm.id] = MessageDecodeError(f"swarm {swarm.id}: a key of it: {wrong}")
                continue
            points, rejected = await self._verify(
                swarm.id, fields, {"checkpoint": ckpt, "snapshot": snap}, quarantine
            )
            per_swarm[swarm.id] = (points, rejected, decode(queue, list[str]))

        # every task any source lists, plus the queues: one read of records and payloads
        wanted: set[str] = set()
        for points, _, queue in per_swarm.values():
            wanted.update(queue)
            for p in points.values():
                for entry in p.doc.workers.values():
                    wanted.update(entry.running)
                    wanted.update(entry.completed)
        wanted_ids = sorted(wanted)
        tasks = await self._tasks(wanted_ids)
        tasks.update({t.id: t for t in running})

        async def payloads(pipe: Any) -> None:
            for tid in wanted_ids:
                pipe.hexists(keys.payloads, tid)
            for t in running:
                pipe.hexists(keys.payloads, t.id)

        flags = await self._pipe(payloads) if wanted_ids or running else []
        with_payload = {
            tid
            for tid, ok in zip([*wanted_ids, *(t.id for t in running)], flags)
            if ok is True or ok == 1
        }
        batch = PlanFacts(
            now_ms=now_ms, workers=live, tasks=tasks, with_payload=with_payload, running=running
        )
        for swarm, rec in chunk:
            if swarm.id not in per_swarm:
                continue
            points, rejected, queue = per_swarm[swarm.id]
            try:
                out[swarm.id] = build_plan(swarm, rec, points, rejected, queue, batch, source)
            except RecoveryError as e:
                out[swarm.id] = e
        return out

    async def _verify(
        self, sid: str, fields: list[Any], heads: dict[str, list[bytes]], quarantine: bool
    ) -> tuple[dict[str, RecoveryPoint], list[Rejected]]:
        """The newest valid point of each kind; corrupted ones met on the way are rejected and,
        with ``quarantine``, moved aside (then the next entry of the list is tried)."""
        points: dict[str, RecoveryPoint] = {}
        rejected: list[Rejected] = []
        try:
            state = verify_state(sid, fields)
            if state is not None:
                points["state"] = state
        except CorruptState as e:
            moved = False
            if quarantine and _is_int(fields[0]):
                moved = await self.manager.quarantine_state(sid, int(fields[0]), e.reason)
            rejected.append(
                Rejected(source="state", id=e.entry_id, reason=e.reason, quarantined=moved)
            )
        for kind in ("checkpoint", "snapshot"):
            entries = heads[kind]
            if not entries:
                continue
            try:
                points[kind] = verify_entry(sid, kind, entries[0])
                continue
            except CorruptState:
                pass
            # the newest is corrupt: read the whole (bounded) list and take the first valid
            for raw in await self._entries(sid, kind):
                try:
                    points[kind] = verify_entry(sid, kind, raw)
                    break
                except CorruptState as e:
                    moved = False
                    if quarantine:
                        moved = await self.manager.quarantine_entry(sid, kind, raw, e.reason)
                    rejected.append(
                        Rejected(source=kind, id=e.entry_id, reason=e.reason, quarantined=moved)
                    )
        return points, rejected

    async def _entries(self, sid: str, kind: str) -> list[bytes | str]:
        key = self.keys.checkpoints(sid) if kind == "checkpoint" else self.keys.snapshots(sid)
        raws: list[bytes | str] = await self.manager.read(lambda: self.client.lrange(key, 0, -1))
        return raws

    # -- applying ------------------------------------------------------------------------------
    async def apply(
        self, plan: RecoveryPlan, min_confidence: float | None = None
    ) -> RecoveryOutcome:
        """Apply one plan (:mod:`multiswarm.recovery_apply`); applying it again does nothing.

        Raises
        ------
        LowConfidence
            ``plan.confidence`` is below ``min_confidence`` (nothing written).
        """
        if min_confidence is not None and plan.confidence < min_confidence and not plan.resume:
            raise LowConfidence(
                f"{plan.swarm}: confidence {plan.confidence:.2f} is below "
                f"{min_confidence:.2f}; nothing applied"
            )
        return (await self.apply_many([plan]))[0]

    async def apply_many(self, plans: Sequence[RecoveryPlan]) -> list[RecoveryOutcome]:
        """Apply plans in pipelined batches; one outcome per plan, in order.

        A refusal for one swarm (not interrupted, stale plan) is its outcome; it does not stop
        the others.
        """
        applier = PlanApplier(self.scripts, self.keys, ttl_ms=self.manager.ttl_ms, actor=self.actor)
        return await applier.apply_many(plans)

    # -- whole recoveries ----------------------------------------------------------------------
    async def recover(
        self, swarm_id: str, source: str | None = None, min_confidence: float | None = None
    ) -> RecoveryOutcome:
        """Plan with quarantine and apply. A swarm that is not interrupted gives outcome
        ``not_interrupted`` (so applying twice succeeds and does nothing the second time).

        Raises NotFound, NoRecoverySource, LowConfidence.
        """
        try:
            plan = await self.plan(swarm_id, source=source, quarantine=True)
        except NotInterrupted as e:
            return RecoveryOutcome(
                plan_id="",
                swarm=swarm_id,
                outcome="not_interrupted",
                requeued=[],
                source="",
                confidence=0.0,
                detail=str(e),
            )
        return await self.apply(plan, min_confidence)

    async def auto_recover(
        self, min_confidence: float, skip: Collection[str] = ()
    ) -> tuple[list[RecoveryOutcome], list[RecoveryPlan]]:
        """One round of the state-manager process: apply every plan at or above
        ``min_confidence`` (and finish begun ones); returns (outcomes, plans left over).

        ``skip``: swarm ids not to plan this round (left to an operator recently).
        """
        ids = [s for s in await self.discover() if s not in skip]
        if ids:
            ids = await self._not_waiting_for_a_host(ids)
        if not ids:
            return [], []
        plans = [
            p
            for p in (await self.plan_many(ids, quarantine=True)).values()
            if isinstance(p, RecoveryPlan)
        ]
        go = [p for p in plans if p.resume or p.confidence >= min_confidence]
        left = [p for p in plans if not (p.resume or p.confidence >= min_confidence)]
        return await self.apply_many(go), left

    async def _not_waiting_for_a_host(self, ids: list[str]) -> list[str]:
        """``ids`` without the swarms :func:`waiting_for_a_host` (planning them again each round
        would only repeat their recovery)."""
        swarms = await self.manager.read(lambda: self.client.hmget(self.keys.swarms, ids))
        records = await self.manager.read(lambda: self.client.hmget(self.keys.recoveries, ids))
        return [sid for sid, raw, rec in zip(ids, swarms, records) if raw and to_plan(raw, rec)]

    async def prune(self) -> int:
        """Forget recovery records of swarms no longer registered."""
        return await prune_recoveries(self.scripts, self.keys)

    async def log(self, swarm_id: str) -> list[dict[str, Any]]:
        """The swarm's recovery log, newest first."""
        out = []
        for raw in await self.manager.read(
            lambda: self.client.lrange(self.keys.recovery_log(swarm_id), 0, -1)
        ):
            try:
                entry = msgspec.json.decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError):
                continue
            if isinstance(entry, dict):  # (a hand-edited entry that is no object: skipped)
                out.append(entry)
        return out


# -- pure helpers --------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True
