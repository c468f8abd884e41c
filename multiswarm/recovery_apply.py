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
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import redis.exceptions

from multiswarm.connection import with_retry
from multiswarm.errors import MultiswarmError, NotInterrupted, ScriptError, StalePlan
from multiswarm.keys import Keys, request_key
from multiswarm.messenger import SwarmMessenger
from multiswarm.recovery_plan import RecoveryOutcome, RecoveryPlan
from multiswarm.scripts import REQUEST_ID, Scripts, translate
from multiswarm.state_codec import SCHEMA_VERSION

#: Plans applied per pipelined round trip (each step is one script call per plan).
APPLY_CHUNK = 100
#: Recovery log entries kept per swarm (the idempotency check of step 2 reads this many).
LOG_KEPT = 50


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def pipelined(scripts: Scripts, fill: Callable[[Any], Awaitable[None]]) -> list[Any]:
    """Run one non-transactional pipeline built by ``fill(pipe)``, retrying connection errors
    for ``scripts.reconnect_timeout_s`` (so send only reads and idempotent scripts); errors of
    single commands come back in place."""

    async def run() -> list[Any]:
        pipe = scripts.client.pipeline(transaction=False)
        await fill(pipe)
        result: list[Any] = await pipe.execute(raise_on_error=False)
        return result

    return await with_retry(run, scripts.reconnect_timeout_s)


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

    async def _call_many(self, name: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """One pipelined round trip of script ``name``; errors come back translated, in place.
        Safe to retry as a whole: every step is idempotent by plan id, and each call carries
        a request key made once, so a retried round trip replays the recorded outcomes."""
        script = self.scripts._script(name)  # the Script object bound by scripts.py
        # Scripts.call appends the request key for scripts wrapped in with_request_id; this
        # pipeline bypasses it, so it must append one too (the wrapper takes the last key).
        sent = [
            [*keys, request_key(keys[0], uuid.uuid4().hex)] if name in REQUEST_ID else keys
            for keys, _ in calls
        ]

        async def fill(pipe: Any) -> None:
            for keys, (_, args) in zip(sent, calls):
                await script(keys=keys, args=args, client=pipe)

        results = await pipelined(self.scripts, fill)
        out: list[Any] = []
        for (keys, args), r in zip(calls, results):
            if isinstance(r, redis.exceptions.NoScriptError):
                try:
                    r = await self.scripts.call(name, keys, args)
                except ScriptError as e:
                    r = e
            elif isinstance(r, redis.exceptions.ResponseError):
                r = translate(r)
            out.append(r)
        return out

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
                (
                    [
                        *keys.task_keyset,
                        *keys.swarm_status_all,
                        keys.queue(p.swarm),
                        keys.recoveries,
                    ],
                    [p.plan_id, p.swarm, p.interrupted_ms, summary, *p.requeue],
                )
            )
        begun = await self._call_many("begin_recovery", begin_calls)

        outcomes: dict[int, RecoveryOutcome] = {}
        going: list[tuple[int, RecoveryPlan, str, list[str]]] = []
        for i, (p, r) in enumerate(zip(plans, begun)):
            if isinstance(r, MultiswarmError):
                outcomes[i] = _outcome(p, _refusal(r), [], str(r))
                continue
            state, requeued = _s(r[0]), [_s(x) for x in r[1:]]
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
                (
                    [keys.state(p.swarm), keys.recovery_log(p.swarm)],
                    [
                        p.plan_id,
                        entry,
                        p.restore,
                        p.restore_checksum,
                        SCHEMA_VERSION,
                        self.ttl_ms,
                        LOG_KEPT,
                    ],
                )
            )
        recorded = await self._call_many("record_recovery", record_calls)
        finish_calls = [
            ([keys.swarms, *keys.swarm_status_all, keys.recoveries], [p.plan_id, p.swarm])
            for _, p, _, _ in going
        ]
        finished = await self._call_many("finish_recovery", finish_calls)
        for (i, p, state, requeued), rec, fin in zip(going, recorded, finished):
            if isinstance(rec, MultiswarmError):
                outcomes[i] = _outcome(p, "error", requeued, f"recovery log: {rec}")
            elif isinstance(fin, MultiswarmError):
                outcomes[i] = _outcome(p, _refusal(fin), requeued, str(fin))
            elif _s(fin) == "superseded":
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
