"""Recovery plans as data, and how one is built from facts read from Redis (pure: no I/O).

:mod:`multiswarm.recovery` reads the facts for a batch of swarms (registry records, live workers,
running tasks, each swarm's verified recovery points and queue) and calls :func:`build_plan` per
swarm; the rules (which tasks to re-queue, which source, the evidence for the confidence) are
here, testable without a server. ``docs/recovery.md`` describes every field.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from multiswarm.confidence import Confidence, score
from multiswarm.errors import MessageDecodeError, NoRecoverySource
from multiswarm.messages import Swarm, Task, decode_swarm
from multiswarm.state_codec import SOURCE_KINDS, RecoveryPoint

#: Task duration assumed by the time estimate when the source gives no evidence (ms).
DEFAULT_TASK_MS = 1_000
#: Time of the three apply steps themselves, for the estimate (ms).
APPLY_OVERHEAD_MS = 10


class Rejected(msgspec.Struct, frozen=True):
    """A source entry that failed verification, and whether it was moved to quarantine."""

    source: str
    id: str
    reason: str
    quarantined: bool


class Alternative(msgspec.Struct, frozen=True):
    """Another valid source, with the confidence a plan from it would have."""

    source: str
    id: str
    label: str
    confidence: float
    age_ms: int


class RecoveryPlan(msgspec.Struct, kw_only=True):
    """What applying would do, and how sure the system is. Times are milliseconds.

    Attributes
    ----------
    plan_id:
        ``<swarm>@<interrupted_ms>.<recoveries>``: one id per interruption (idempotency).
    status:
        Registry status when planned (``interrupted``, or ``recovering`` when resuming).
    source, source_id, source_label, source_version, source_ms:
        The chosen recovery point (``none`` when no source is valid) and when it was captured.
    confidence, evidence:
        In [0.5, 0.95], and the factors it was computed from (:mod:`multiswarm.confidence`).
    requeue:
        Tasks of the swarm assigned to it or running on a dead worker: back to ready on apply.
    completed:
        Tasks the source lists that are already completed (nothing to redo).
    elsewhere:
        Tasks the source lists that moved on (retrying, ready, running on a live worker, ended).
    missing:
        Tasks concerned whose definition (record, handler, payload) is incomplete.
    agents:
        Agent ids of dead hosts to restart when a worker hosts the swarm again.
    estimated_ms:
        Rough time until the re-queued work is redone (``docs/recovery.md``).
    rejected, alternatives:
        Corrupted entries met; other valid sources.
    resume:
        True when an earlier apply of this plan stopped between steps.
    """

    plan_id: str
    swarm: str
    status: str
    interrupted_ms: int
    source: str
    source_id: str
    source_label: str
    source_version: int
    source_ms: int
    confidence: float
    evidence: Confidence
    requeue: list[str]
    completed: list[str]
    elsewhere: list[str]
    missing: list[str]
    agents: list[str]
    estimated_ms: int
    rejected: list[Rejected]
    alternatives: list[Alternative]
    resume: bool
    created_ms: int
    #: data of the chosen checkpoint or snapshot, restored as current state on apply
    restore: bytes = b""
    restore_checksum: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the restore data."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out.pop("restore", None)
        out.pop("restore_checksum", None)
        return out


class RecoveryOutcome(msgspec.Struct, kw_only=True):
    """What an apply did.

    Attributes
    ----------
    outcome:
        ``applied`` (done now) | ``resumed`` (an interrupted apply finished now) |
        ``already_applied`` (nothing done) | ``superseded`` (the swarm moved on meanwhile) |
        ``not_interrupted`` | ``stale_plan`` (planned for an earlier interruption) |
        ``below_threshold`` (confidence under the minimum; nothing done) | ``error``.
    requeued:
        Tasks made ready by this plan (by this call, or by the earlier one when resumed).
    """

    plan_id: str
    swarm: str
    outcome: str
    requeued: list[str]
    source: str
    confidence: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class _Evaluated(msgspec.Struct):
    point: RecoveryPoint | None
    confidence: Confidence
    completed: list[str]
    elsewhere: list[str]
    missing: list[str]
    agents: list[str]
    durations: list[int]


class PlanFacts(msgspec.Struct):
    """Facts shared by the swarms of one planning batch."""

    now_ms: int
    workers: set[str]
    tasks: dict[str, Task | None]
    with_payload: set[str]
    running: list[Task]


def _complete(tid: str, batch: PlanFacts) -> bool:
    """A task's definition is complete when its record decodes, names a handler and its
    payload is stored: everything needed to run it again."""
    t = batch.tasks.get(tid)
    return t is not None and bool(t.handler) and tid in batch.with_payload


def _in_flight(t: Task | None, sid: str, live: set[str]) -> bool:
    """The re-queue condition of begin_recovery.lua."""
    return (
        t is not None
        and t.swarm == sid
        and (t.status == "assigned" or (t.status == "running" and t.worker not in live))
    )


def _evaluate(
    swarm: Swarm,
    point: RecoveryPoint | None,
    requeue: list[str],
    interrupted_ms: int,
    batch: PlanFacts,
) -> _Evaluated:
    workers = point.doc.workers if point else {}
    listed: set[str] = set()
    for entry in workers.values():
        listed.update(entry.running)
        listed.update(entry.completed)
    referenced = listed | set(requeue)
    complete = {t for t in referenced if _complete(t, batch)}
    completed = sorted(t for t in listed if (batch.tasks.get(t) or _NONE).status == "completed")
    missing = sorted(referenced - complete)
    elsewhere = sorted(listed - set(requeue) - set(completed) - set(missing))
    recorded = max((len(e.agent_ids) or e.agents for e in workers.values()), default=0)
    agents: set[str] = set()
    for wid, entry in workers.items():
        if wid not in batch.workers:
            agents.update(entry.agent_ids or [f"{swarm.id}.a{i}" for i in range(entry.agents)])
    conf = score(
        point.kind if point else "none",
        age_ms=interrupted_ms - point.captured_ms if point else 0,
        tasks_known=len(referenced),
        tasks_complete=len(complete),
        tracks_tasks=bool(workers),
        agents_recorded=recorded,
        agents_expected=swarm.max_agents,
    )
    durations = []
    for tid in completed:
        t = batch.tasks.get(tid)
        if t is not None and t.finished_ms > t.started_ms > 0:
            durations.append(t.finished_ms - t.started_ms)
    return _Evaluated(
        point=point,
        confidence=conf,
        completed=completed,
        elsewhere=elsewhere,
        missing=missing,
        agents=sorted(agents),
        durations=durations,
    )


_NONE = Task(id="", handler="", status="")


def _estimate(
    ev: _Evaluated, requeue: list[str], swarm: Swarm, interrupted_ms: int, batch: PlanFacts
) -> int:
    """Apply overhead plus waves of re-queued tasks over the swarm's agents, each wave as long as
    the median task the source shows completed (else the median age of the interrupted runs,
    else :data:`DEFAULT_TASK_MS`)."""
    durations = ev.durations or [
        interrupted_ms - t.started_ms
        for tid in requeue
        if (t := batch.tasks.get(tid)) is not None and 0 < t.started_ms < interrupted_ms
    ]
    per_task = int(statistics.median(durations)) if durations else DEFAULT_TASK_MS
    waves = math.ceil(len(requeue) / max(1, swarm.max_agents))
    return APPLY_OVERHEAD_MS + waves * per_task


def build_plan(
    swarm: Swarm,
    rec: dict[str, Any],
    points: dict[str, RecoveryPoint],
    rejected: list[Rejected],
    queue: Iterable[str],
    batch: PlanFacts,
    source: str | None,
) -> RecoveryPlan:
    resume = swarm.status == "recovering"
    interrupted_ms = int(rec.get("interrupted_ms", swarm.status_ms)) if resume else swarm.status_ms
    plan_id = str(rec["plan"]) if resume else f"{swarm.id}@{swarm.status_ms}.{swarm.recoveries}"
    sid = swarm.id
    candidates = set(queue) | {t.id for t in batch.running if t.swarm == sid}
    for point in points.values():
        for entry in point.doc.workers.values():
            candidates.update(entry.running)
    requeue = sorted(c for c in candidates if _in_flight(batch.tasks.get(c), sid, batch.workers))

    # a resumed plan keeps the kind of source it was begun with (an operator's --source), before
    # the default order: its restore may not have happened yet
    begun_with = str(rec.get("source", "")) if resume and not source else ""
    order = [source] if source else sorted(SOURCE_KINDS, key=lambda k: k != begun_with)
    chosen = next((points[k] for k in order if k in points), None)
    if source and chosen is None:
        why = "; ".join(f"{r.id or '?'}: {r.reason}" for r in rejected if r.source == source)
        raise NoRecoverySource(f"{sid}: no valid {source}" + (f" ({why})" if why else ""))
    ev = _evaluate(swarm, chosen, requeue, interrupted_ms, batch)
    alternatives = []
    for kind in SOURCE_KINDS:
        p = points.get(kind)
        if p is not None and p is not chosen:
            alt = _evaluate(swarm, p, requeue, interrupted_ms, batch)
            alternatives.append(
                Alternative(
                    source=kind,
                    id=p.id,
                    label=p.label,
                    confidence=alt.confidence.value,
                    age_ms=alt.confidence.age_ms,
                )
            )
    restore = chosen is not None and chosen.kind != "state"
    return RecoveryPlan(
        plan_id=plan_id,
        swarm=sid,
        status=swarm.status,
        interrupted_ms=interrupted_ms,
        source=chosen.kind if chosen else "none",
        source_id=chosen.id if chosen else "",
        source_label=chosen.label if chosen else "",
        source_version=chosen.version if chosen else 0,
        source_ms=chosen.captured_ms if chosen else 0,
        confidence=ev.confidence.value,
        evidence=ev.confidence,
        requeue=requeue,
        completed=ev.completed,
        elsewhere=ev.elsewhere,
        missing=ev.missing,
        agents=ev.agents,
        estimated_ms=_estimate(ev, requeue, swarm, interrupted_ms, batch),
        rejected=rejected,
        alternatives=alternatives,
        resume=resume,
        created_ms=batch.now_ms,
        restore=chosen.text if restore and chosen else b"",
        restore_checksum=chosen.checksum if restore and chosen else "",
    )


def waiting_for_a_host(swarm: Swarm, record: Mapping[str, Any]) -> bool:
    """True when ``swarm`` was recovered since its interruption and waits for a host: recovery
    of a swarm nobody hosts leaves it ``interrupted`` (never active without a live host,
    finish_recovery.lua) and a worker that hosts it makes it active (host_swarms.lua).
    ``record``: its recovery record (``{ns}:recoveries``)."""
    return (
        swarm.status == "interrupted"
        and not swarm.host_workers
        and record.get("state") == "applied"
        and int(record.get("finished_ms", 0)) >= swarm.status_ms
    )


def plan_record(raw: bytes | str | None) -> dict[str, Any]:
    """A swarm's recovery record (``{ns}:recoveries``) as a dict; ``{}`` when absent or not JSON."""
    if raw is None:
        return {}
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def to_plan(raw: bytes | str, rec: bytes | str | None) -> bool:
    """Whether a recovery round plans the swarm of record ``raw``: not one
    :func:`waiting_for_a_host`; one whose record cannot be decoded too (its plan says why, for
    it alone: one bad record must not stop the round for every swarm)."""
    try:
        return not waiting_for_a_host(decode_swarm(raw), plan_record(rec))
    except MessageDecodeError:
        return True
