"""The recovery confidence formula (multiswarm/confidence.py, docs/recovery.md)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiswarm.confidence import (
    CEILING,
    FLOOR,
    FRESH_MS,
    HALF_LIFE_MS,
    freshness,
    original_score,
    score,
)


def _score(
    kind: str = "state",
    age_ms: int = 0,
    known: int = 4,
    complete: int = 4,
    tracks: bool = True,
    recorded: int = 2,
    expected: int = 2,
) -> float:
    return score(
        kind,
        age_ms=age_ms,
        tasks_known=known,
        tasks_complete=complete,
        tracks_tasks=tracks,
        agents_recorded=recorded,
        agents_expected=expected,
    ).value


def test_fresh_complete_state_is_the_ceiling() -> None:
    assert _score() == CEILING


def test_freshness_is_full_within_a_minute_then_halves_every_half_life() -> None:
    assert freshness(-5_000) == 1.0
    assert freshness(FRESH_MS) == 1.0
    assert freshness(FRESH_MS + HALF_LIFE_MS) == pytest.approx(0.5)
    assert freshness(FRESH_MS + 2 * HALF_LIFE_MS) == pytest.approx(0.25)


def test_old_source_scores_near_the_floor_and_below_the_auto_threshold() -> None:
    old = _score(age_ms=30 * 60_000)
    assert FLOOR <= old < 0.55
    five_min = _score(age_ms=5 * 60_000)
    assert five_min == pytest.approx(
        0.5 + 0.45 * 2 ** (-(300_000 - FRESH_MS) / HALF_LIFE_MS), abs=1e-4
    )


def test_partial_evidence_multiplies() -> None:
    # half the task definitions incomplete and half the agents unknown: 0.5 + 0.45 * 0.25
    assert _score(known=4, complete=2, recorded=1, expected=2) == pytest.approx(0.6125)
    assert _score(known=4, complete=2) == pytest.approx(0.725)


def test_source_kind_weights() -> None:
    assert _score("checkpoint") == pytest.approx(0.905)
    assert _score("snapshot") == pytest.approx(0.86)
    assert _score("none") == FLOOR


def test_no_task_tracking_is_no_evidence_but_an_idle_tracked_swarm_is_complete() -> None:
    assert _score(known=0, complete=0, tracks=False) == FLOOR
    assert _score(known=0, complete=0, tracks=True) == CEILING


KINDS = st.sampled_from(["state", "checkpoint", "snapshot", "none"])


@settings(max_examples=300, deadline=None)
@given(
    kind=KINDS,
    age_ms=st.integers(-10_000, 10**9),
    later_ms=st.integers(0, 10**9),
    known=st.integers(0, 1000),
    data=st.data(),
    tracks=st.booleans(),
    expected=st.integers(0, 64),
)
def test_range_and_monotonicity(
    kind: str,
    age_ms: int,
    later_ms: int,
    known: int,
    data: st.DataObject,
    tracks: bool,
    expected: int,
) -> None:
    """Always within [FLOOR, CEILING]; never rises with age; never falls with more complete
    task definitions or more agents recorded."""
    complete = data.draw(st.integers(0, known), label="complete")
    recorded = data.draw(st.integers(0, expected), label="recorded")

    def at(age: int = age_ms, done: int = complete, agents: int = recorded) -> float:
        return _score(
            kind,
            age_ms=age,
            known=known,
            complete=done,
            tracks=tracks,
            recorded=agents,
            expected=expected,
        )

    value = at()
    assert FLOOR <= value <= CEILING
    assert at(age=age_ms + later_ms) <= value
    assert at(done=min(known, complete + 1)) >= value
    assert at(agents=min(expected, recorded + 1)) >= value


def test_original_formula_rewarded_mere_presence() -> None:
    # the replaced formula gave 0.95 to a fresh source whatever share of tasks it could restore
    assert original_score(10_000, any_tasks=True, any_agents=True) == 0.95
    assert _score(known=10, complete=1, recorded=1, expected=4) < 0.55


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        _score("backup")
