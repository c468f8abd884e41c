"""State and recovery methods of the :class:`~multiswarm.api.Multiswarm` facade: saved state,
snapshots and checkpoints, interrupted swarms and their recovery.

Plain async functions over a :class:`~multiswarm.api_types.Host`, bound as facade methods; the
work is done by :class:`~multiswarm.state.SwarmStateManager` and
:class:`~multiswarm.recovery.SwarmRecovery` (see docs/recovery.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from multiswarm.api_types import Host, Part, QuarantineEntry, RecoveryLogEntry, RecoveryPointInfo
from multiswarm.errors import MultiswarmError
from multiswarm.partition_api import fan_out, on_swarm
from multiswarm.partitions import swarm_partitions
from multiswarm.recovery import SwarmRecovery
from multiswarm.recovery_plan import RecoveryOutcome, RecoveryPlan
from multiswarm.state import StateRecord

#: Kinds of recovery points.
PointKind = Literal["snapshot", "checkpoint"]


def _recovery(host: Part) -> SwarmRecovery:
    """The recovery of one partition (its registry, tasks and leases). The state, snapshots,
    checkpoints, quarantine and recovery log of a swarm are not partitioned (their keys carry
    the swarm id), so the functions reading only those use partition 0's components."""
    return SwarmRecovery(host.state, actor=host.actor)


# -- state -----------------------------------------------------------------------------------
async def save_state(
    host: Host, swarm_id: str, data: dict[str, Any], expected_version: int | None = None
) -> int:
    """Store ``data`` (JSON-able) as the swarm's current state, checksummed; kept
    ``settings.state_ttl_ms``.

    Returns
    -------
    int
        The new version (1 for the first save).

    Raises
    ------
    VersionConflict
        ``expected_version`` is given and another version is stored.
    """
    return await host.state.save_state(swarm_id, data, expected_version)


async def load_state(host: Host, swarm_id: str) -> StateRecord | None:
    """The current state (version, data, updated_ms), or None when there is none.

    Raises
    ------
    CorruptState
        The stored state fails verification (checksum, schema).
    """
    return await host.state.load_state(swarm_id)


# -- snapshots and checkpoints ---------------------------------------------------------------
async def create_snapshot(host: Host, swarm_id: str, label: str = "manual") -> int:
    """Copy the current state into the swarm's snapshots (the oldest beyond
    ``settings.snapshots_kept`` is dropped). Returns the version captured, 0 when there is no
    state."""
    return await host.state.create_snapshot(swarm_id, label)


async def create_checkpoint(host: Host, swarm_id: str, name: str) -> int:
    """Copy the current state as checkpoint ``name`` (replacing an older one of that name).

    Returns
    -------
    int
        The version captured, 0 when there is no state (nothing written).

    Raises
    ------
    InvalidIdError
        ``name`` is not an id.
    """
    return await host.state.create_checkpoint(swarm_id, name)


async def list_recovery_points(
    host: Host, swarm_id: str, kind: PointKind
) -> list[RecoveryPointInfo]:
    """The swarm's snapshots or checkpoints, newest first, each verified (``integrity``)."""
    read = host.state.list_snapshots if kind == "snapshot" else host.state.list_checkpoints
    return msgspec.convert(await read(swarm_id), list[RecoveryPointInfo])


async def restore_recovery_point(
    host: Host, swarm_id: str, kind: PointKind, point: str | None = None
) -> int:
    """Make a snapshot (by id) or checkpoint (by name), default the newest, the swarm's current
    state.

    Returns
    -------
    int
        The new state version.

    Raises
    ------
    NotFound
        No such recovery point.
    CorruptState
        It fails verification (nothing restored).
    """
    if kind == "snapshot":
        return await host.state.restore_snapshot(swarm_id, point)
    return await host.state.restore_checkpoint(swarm_id, point)


async def quarantined(host: Host, swarm_id: str) -> list[QuarantineEntry]:
    """Entries of the swarm moved aside as corrupt, newest first, with the reason."""
    return msgspec.convert(await host.state.list_quarantine(swarm_id), list[QuarantineEntry])


# -- recovery --------------------------------------------------------------------------------
async def plan_recoveries(
    host: Host, source: str | None = None, *, quarantine: bool = False
) -> dict[str, RecoveryPlan | MultiswarmError]:
    """A plan for every interrupted swarm (or why there is none: NotFound,
    NoRecoverySource...), by swarm id.

    Parameters
    ----------
    source:
        ``state`` | ``checkpoint`` | ``snapshot``: use only this kind [default: the first valid
        in that order].
    quarantine:
        Move corrupted entries aside (when the plans are made to be applied); a dry run only
        reports them.
    """

    async def plan(part: Part) -> dict[str, RecoveryPlan | MultiswarmError]:
        r = _recovery(part)
        return await r.plan_many(await r.discover(), source=source, quarantine=quarantine)

    out: dict[str, RecoveryPlan | MultiswarmError] = {}
    for plans in await fan_out(host, plan):
        out.update(plans)
    return dict(sorted(out.items())) if len(host.parts) > 1 else out


async def list_recoveries(host: Host) -> list[RecoveryPlan]:
    """Interrupted swarms with their best plan (a dry run), by swarm id; swarms that cannot
    be planned are left out (:func:`plan_recoveries` says why). A plan carries the data it
    would restore (``restore``, bytes): show ``plan.to_dict()``, which leaves it out."""
    plans = await plan_recoveries(host)
    return [p for p in plans.values() if isinstance(p, RecoveryPlan)]


async def plan_recovery(
    host: Host, swarm_id: str, source: str | None = None, *, quarantine: bool = False
) -> RecoveryPlan:
    """One swarm's plan: chosen source, confidence in [0.5, 0.95], tasks to re-queue.

    Raises
    ------
    NotFound, NotInterrupted, NoRecoverySource
    """
    return await on_swarm(host, swarm_id, lambda p: _recovery(p).plan(swarm_id, source, quarantine))


async def apply_recovery(
    host: Host, plan: RecoveryPlan, min_confidence: float | None = None
) -> RecoveryOutcome:
    """Apply a plan from :func:`plan_recovery`; applying it again does nothing.

    Returns
    -------
    RecoveryOutcome
        ``applied``, ``resumed``, ``already_applied``, ``superseded``, ``not_interrupted``,
        ``stale_plan``... with the task ids re-queued.

    Raises
    ------
    LowConfidence
        ``plan.confidence`` is below ``min_confidence`` (nothing written).
    """
    return await on_swarm(host, plan.swarm, lambda p: _recovery(p).apply(plan, min_confidence))


async def apply_recoveries(host: Host, plans: Sequence[RecoveryPlan]) -> list[RecoveryOutcome]:
    """Apply many plans in pipelined batches; one outcome per plan, in order (a refusal for
    one swarm is its outcome and does not stop the others)."""
    if len(host.parts) == 1:
        return await _recovery(host).apply_many(plans)
    where = await swarm_partitions(host.scripts, host.settings, sorted({p.swarm for p in plans}))
    groups: dict[int, list[int]] = {}
    for i, plan in enumerate(plans):
        # placed nowhere: partition 0's registry does not know it either, and says so
        groups.setdefault(where[plan.swarm] or 0, []).append(i)
    out: list[RecoveryOutcome | None] = [None] * len(plans)
    for k, idx in groups.items():
        done = await _recovery(host.parts[k]).apply_many([plans[i] for i in idx])
        for i, outcome in zip(idx, done, strict=True):
            out[i] = outcome
    return [o for o in out if o is not None]


async def recover_swarm(
    host: Host, swarm_id: str, source: str | None = None, min_confidence: float | None = None
) -> RecoveryOutcome:
    """Plan (quarantining corrupt entries) and apply; a swarm that is not interrupted gives
    outcome ``not_interrupted``, so applying twice does nothing the second time.

    Raises
    ------
    NotFound, NoRecoverySource, LowConfidence
    """
    return await on_swarm(
        host, swarm_id, lambda p: _recovery(p).recover(swarm_id, source, min_confidence)
    )


async def recovery_log(host: Host, swarm_id: str) -> list[RecoveryLogEntry]:
    """What each recovery of the swarm did, newest first."""
    return msgspec.convert(await _recovery(host).log(swarm_id), list[RecoveryLogEntry])
