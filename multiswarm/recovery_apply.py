"""Applying recovery plans: three idempotent script steps per plan, pipelined in batches.

The registry and tasks live in the namespace's hash slot while the recovery log and state live in
the swarm's slot, so one plan is applied in three steps, each idempotent by plan id:

1. ``begin_recovery.lua`` (global slot): ``interrupted -> recovering``, re-queue the in-flight
   tasks, record the plan id in ``{ns}:recoveries``; a plan id seen before does nothing.
2. ``record_recovery.lua`` (swarm slot): restore the chosen checkpoint or snapshot as current
   state, append to the recovery log; once per plan id.
3. ``finish_recovery.lua`` (global slot): ``recovering -> active``; once per plan id.

Each step is one pipelined round trip for up to :data:`APPLY_CHUNK` plans. Plans are made by
:class:`multiswarm.recovery.SwarmRecovery`, which delegates applying to :class:`PlanApplier`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from multiswarm.errors import MultiswarmError, NotInterrupted, StalePlan
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger
from multiswarm.ops import recovery as ops
from multiswarm.ops.recovery import Begin, Record
from multiswarm.recovery_plan import RecoveryOutcome, RecoveryPlan
from multiswarm.scripts import Scripts
from multiswarm.state_codec import SCHEMA_VERSION

#: Plans applied per pipelined round trip (each step is one script call per plan).
APPLY_CHUNK = 100
#: Recovery log entries kept per swarm (the idempotency check of step 2 reads this many).
LOG_KEPT = 50


class PlanApplier:
    """Applies recovery plans (see the module docstring).

    Parameters
    ----------
    scripts, keys:
        Bound scripts of a client; key names of the namespace.
    ttl_ms:
        ``SWARM_TTL`` of the restored state and of the recovery log, ms.
    actor:
        Who applies (recorded in the recovery log and the ``swarm.recovered`` event).
    """

    def __init__(self, scripts: Scripts, keys: Keys, *, ttl_ms: int, actor: str) -> None:
        self.scripts = scripts
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.actor = actor

    async def apply_many(self, plans: Sequence[RecoveryPlan]) -> list[RecoveryOutcome]:
        """Apply plans in pipelined batches; one outcome per plan, in order (a refusal for one
        swarm is its outcome). Applied ones are announced on the tasks and events channels."""
        outcomes: list[RecoveryOutcome] = []
        for start in range(0, len(plans), APPLY_CHUNK):
            outcomes += await self._apply_chunk(list(plans[start : start + APPLY_CHUNK]))
        applied = [o for o in outcomes if o.outcome in ("applied", "resumed")]
        if applied:
            messenger = SwarmMessenger(self.scripts.client, self.keys, sender=self.actor)
            # notifications only: the leader wakes to dispatch the re-queued tasks
            await messenger.publish(
                self.keys.ch_tasks, "swarm_changed", {"recovered": [o.swarm for o in applied]}
            )
            for o in applied:
                await messenger.publish(
                    self.keys.ch_events,
                    "swarm.recovered",
                    {
                        "swarm": o.swarm,
                        "plan": o.plan_id,
                        "source": o.source,
                        "confidence": o.confidence,
                        "requeued": len(o.requeued),
                    },
                )
        return outcomes

    async def _apply_chunk(self, plans: list[RecoveryPlan]) -> list[RecoveryOutcome]:
        keys = self.keys
        begin_calls = []
        for p in plans:
            summary = msgspec.json.encode(
                {
                    "source": p.source,
                    "source_id": p.source_id,
                    "confidence": p.confidence,
                    "interrupted_ms": p.interrupted_ms,
                    "by": self.actor,
                }
            )
            begin_calls.append(
                Begin(
                    plan_id=p.plan_id,
                    swarm=p.swarm,
                    interrupted_ms=p.interrupted_ms,
                    summary=summary,
                    requeue=list(p.requeue),
                )
            )
        begun = await ops.begin_recoveries(self.scripts, keys, begin_calls)

        outcomes: dict[int, RecoveryOutcome] = {}
        going: list[tuple[int, RecoveryPlan, str, list[str]]] = []
        for i, (p, r) in enumerate(zip(plans, begun)):
            if isinstance(r, MultiswarmError):
                outcomes[i] = _outcome(p, _refusal(r), [], str(r))
                continue
            state, requeued = r.state, r.requeued
            if state in ("begun", "recovering"):
                going.append((i, p, state, requeued))
            else:
                outcomes[i] = _outcome(
                    p, "already_applied", requeued, f"plan {p.plan_id} ended {state} before"
                )

        now_ms = int(time.time() * 1000)
        record_calls = []
        for _, p, _, requeued in going:
            entry = msgspec.json.encode(
                {
                    "plan": p.plan_id,
                    "swarm": p.swarm,
                    "source": p.source,
                    "source_id": p.source_id,
                    "source_label": p.source_label,
                    "source_version": p.source_version,
                    "confidence": p.confidence,
                    "interrupted_ms": p.interrupted_ms,
                    "requeued": requeued,
                    "completed": len(p.completed),
                    "missing": p.missing,
                    "agents": p.agents,
                    "rejected": [msgspec.to_builtins(r) for r in p.rejected],
                    "by": self.actor,
                    "at_ms": now_ms,
                }
            )
            record_calls.append(
                Record(
                    plan_id=p.plan_id,
                    swarm=p.swarm,
                    entry=entry,
                    restore=p.restore,
                    checksum=p.restore_checksum,
                    schema=SCHEMA_VERSION,
                    ttl_ms=self.ttl_ms,
                    kept=LOG_KEPT,
                )
            )
        recorded = await ops.record_recoveries(self.scripts, keys, record_calls)
        # a plan whose restore failed is not finished: the swarm stays recovering under it, and
        # the next apply resumes it (finished, the restore would be lost for good)
        for (i, p, _, requeued), rec in zip(going, recorded):
            if isinstance(rec, MultiswarmError):
                outcomes[i] = _outcome(
                    p, "error", requeued, f"restore and recovery log: {rec} (run it again)"
                )
        going = [g for g, rec in zip(going, recorded) if not isinstance(rec, MultiswarmError)]
        finished = await ops.finish_recoveries(
            self.scripts, keys, [(p.plan_id, p.swarm) for _, p, _, _ in going]
        )
        for (i, p, state, requeued), fin in zip(going, finished):
            if isinstance(fin, MultiswarmError):
                outcomes[i] = _outcome(p, _refusal(fin), requeued, str(fin))
            elif fin == "superseded":
                outcomes[i] = _outcome(
                    p,
                    "superseded",
                    requeued,
                    "the swarm left 'recovering' before the plan finished",
                )
            else:
                # 'already' here means a concurrent applier of the same plan finished first
                outcomes[i] = _outcome(p, "applied" if state == "begun" else "resumed", requeued)
        return [outcomes[i] for i in range(len(plans))]


def _refusal(e: MultiswarmError) -> str:
    if isinstance(e, NotInterrupted):
        return "not_interrupted"
    if isinstance(e, StalePlan):
        return "stale_plan"
    return "error"


def _outcome(p: RecoveryPlan, kind: str, requeued: list[str], detail: str = "") -> RecoveryOutcome:
    return RecoveryOutcome(
        plan_id=p.plan_id,
        swarm=p.swarm,
        outcome=kind,
        requeued=requeued,
        source=p.source,
        confidence=p.confidence,
        detail=detail,
    )
