"""Confidence of a recovery plan: how sure the system is that a recovery point restores a swarm.

Pure arithmetic, no Redis, so the formula is unit-tested on its own and documented once
(``docs/recovery.md``)::

    confidence = clamp(0.5 + 0.45 * K * F * T * A, 0.5, 0.95)

``K`` weighs the source kind, ``F`` its freshness, ``T`` the share of tasks whose definitions are
complete and ``A`` the share of agents accounted for, each in [0, 1]. The range [0.5, 0.95] is
the original system's; the evidence terms replace its "is the list non-empty" bonuses. The terms
multiply because a recovery is only as good as its weakest evidence: a fresh state that knows
half the agents is not a near-certain recovery.
"""

from __future__ import annotations

import math

import msgspec

from multiswarm.errors import InvalidArgumentError

#: Lowest and highest confidence (the original system's range).
FLOOR = 0.5
CEILING = 0.95

#: A source captured at most this long before the interruption counts as fully fresh (ms). One
#: minute covers the default heartbeat timeout (30 s) plus the save period (10 s), i.e. the
#: last state a worker writes before the registry notices it died.
FRESH_MS = 60_000

#: Past :data:`FRESH_MS`, freshness halves every this many ms: the snapshot interval
#: (``SNAPSHOT_INTERVAL``, 5 min), so one missed snapshot round costs half the freshness.
HALF_LIFE_MS = 300_000

#: Trust in each source kind, everything else equal. The current state is written by the live
#: workers; a checkpoint is a deliberate but older point; a snapshot is a periodic copy, and
#: reaching one means the sources before it were missing or corrupt.
KIND_WEIGHT = {"state": 1.0, "checkpoint": 0.9, "snapshot": 0.8, "none": 0.0}


class Confidence(msgspec.Struct, frozen=True, kw_only=True):
    """A confidence value with the evidence it was computed from.

    Attributes
    ----------
    value:
        The confidence, in [:data:`FLOOR`, :data:`CEILING`], rounded to 4 places.
    kind, freshness, tasks, agents:
        The factors ``K``, ``F``, ``T``, ``A`` of the formula, each in [0, 1].
    age_ms:
        How long before the interruption the source was captured (0 if after).
    tasks_known, tasks_complete:
        Tasks the plan concerns, and those whose definition (record, handler, payload) exists.
    agents_recorded, agents_expected:
        Agents the source records, and the agents the swarm is registered with.
    """

    value: float
    kind: float
    freshness: float
    tasks: float
    agents: float
    age_ms: int
    tasks_known: int
    tasks_complete: int
    agents_recorded: int
    agents_expected: int


def freshness(age_ms: int) -> float:
    """``F``: 1 up to :data:`FRESH_MS`, then halving every :data:`HALF_LIFE_MS`.

    Parameters
    ----------
    age_ms:
        Milliseconds between the capture of the source and the interruption; negative (captured
        after the interruption) counts as 0.
    """
    over = max(0, age_ms) - FRESH_MS
    if over <= 0:
        return 1.0
    return math.pow(2.0, -over / HALF_LIFE_MS)


def task_share(tasks_known: int, tasks_complete: int, tracks_tasks: bool) -> float:
    """``T``: share of the tasks concerned whose definitions are complete.

    A source that tracks tasks (records which tasks its workers ran) and names none, with none in
    flight, scores 1: nothing can be lost. A source that does not track tasks scores 0: it is no
    evidence about them at all.
    """
    if tasks_known <= 0:
        return 1.0 if tracks_tasks else 0.0
    return max(0.0, min(1.0, tasks_complete / tasks_known))


def agent_share(agents_recorded: int, agents_expected: int) -> float:
    """``A``: agents the source accounts for, over the agents the swarm is registered with."""
    if agents_expected <= 0:
        return 1.0 if agents_recorded > 0 else 0.0
    return max(0.0, min(1.0, agents_recorded / agents_expected))


def score(
    kind: str,
    *,
    age_ms: int,
    tasks_known: int,
    tasks_complete: int,
    tracks_tasks: bool,
    agents_recorded: int,
    agents_expected: int,
) -> Confidence:
    """Confidence of recovering from one source.

    Parameters
    ----------
    kind:
        ``state`` | ``checkpoint`` | ``snapshot`` | ``none`` (no usable source).
    age_ms:
        Capture of the source to the interruption, in milliseconds.
    tasks_known, tasks_complete, tracks_tasks:
        See :func:`task_share`.
    agents_recorded, agents_expected:
        See :func:`agent_share`.

    Raises
    ------
    ValueError
        ``kind`` is not one of :data:`KIND_WEIGHT`.
    """
    if kind not in KIND_WEIGHT:
        raise InvalidArgumentError(f"unknown source kind {kind!r}; one of {sorted(KIND_WEIGHT)}")
    k, f = KIND_WEIGHT[kind], freshness(age_ms)
    t = task_share(tasks_known, tasks_complete, tracks_tasks)
    a = agent_share(agents_recorded, agents_expected)
    value = min(CEILING, max(FLOOR, FLOOR + (CEILING - FLOOR) * k * f * t * a))
    return Confidence(
        value=round(value, 4),
        kind=k,
        freshness=round(f, 4),
        tasks=round(t, 4),
        agents=round(a, 4),
        age_ms=max(0, age_ms),
        tasks_known=tasks_known,
        tasks_complete=tasks_complete,
        agents_recorded=agents_recorded,
        agents_expected=agents_expected,
    )


def original_score(age_ms: int, any_tasks: bool, any_agents: bool) -> float:
    """The replaced system's formula, kept for comparison in tests and docs only."""
    value = 0.5
    if age_ms < 60_000:
        value += 0.3
    elif age_ms < 300_000:
        value += 0.2
    value += 0.1 if any_tasks else 0.0
    value += 0.1 if any_agents else 0.0
    return min(0.95, value)
