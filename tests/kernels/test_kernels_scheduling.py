"""The scheduling kernel against its plain-Python reference, its invariants and its errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiswarm.kernels import constants as c
from multiswarm.kernels.errors import KernelInputError
from multiswarm.kernels.scheduling import ScheduleResult, deps_to_csr, schedule

# Derandomized (seeded by the test's name) and bounded, so the suite is repeatable and quick.
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

STRATEGY_CODES = sorted(c.STRATEGIES.values())


@st.composite
def batches(draw: st.DrawFn, *, with_deps: bool = True) -> dict[str, Any]:
    """Small batches with many ties, full agents, unhealthy agents and (optionally) cycles."""
    n = draw(st.integers(0, 24))
    m = draw(st.integers(0, 8))
    masks = st.integers(0, 15)
    costs = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 0.1])
    tasks = draw(st.lists(st.tuples(st.integers(-2, 3), masks, costs), min_size=n, max_size=n))
    agents = draw(
        st.lists(
            st.tuples(
                st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0]),
                st.sampled_from([1.0, 2.0, 3.0, 5.0, 0.3, math.inf]),
                masks,
                st.sampled_from([0, 0, 0, 1, 2, 3]),
            ),
            min_size=m,
            max_size=m,
        )
    )
    deps: list[list[int]] = [[] for _ in range(n)]
    if with_deps and n:
        allow_cycles = draw(st.booleans())
        for i in range(n):
            upper = n if allow_cycles else i
            if upper:
                deps[i] = draw(st.lists(st.integers(0, upper - 1), max_size=2))
    indptr, indices = deps_to_csr(deps)
    return {
        "priority": np.array([t[0] for t in tasks], dtype=np.int64),
        "task_caps": np.array([t[1] for t in tasks], dtype=np.uint64),
        "task_cost": np.array([t[2] for t in tasks], dtype=np.float64),
        "agent_load": np.array([a[0] for a in agents], dtype=np.float64),
        "agent_capacity": np.array([a[1] for a in agents], dtype=np.float64),
        "agent_caps": np.array([a[2] for a in agents], dtype=np.uint64),
        "agent_health": np.array([a[3] for a in agents], dtype=np.int8),
        "dep_indptr": indptr,
        "dep_indices": indices,
        "strategy": draw(st.sampled_from(STRATEGY_CODES)),
        "cursor": draw(st.integers(0, 20)),
    }


def run(batch: dict[str, Any], backend: str = "numba") -> ScheduleResult:
    return schedule(**batch, backend=backend)  # type: ignore[arg-type]


def deps_of(batch: dict[str, Any], task: int) -> list[int]:
    ptr = batch["dep_indptr"]
    return [int(d) for d in batch["dep_indices"][ptr[task] : ptr[task + 1]]]


# --- kernel == reference ------------------------------------------------------------------------


@SETTINGS
@given(batches())
def test_kernel_matches_reference(batch: dict[str, Any]) -> None:
    got = run(batch)
    want = run(batch, "python")
    np.testing.assert_array_equal(got.assignment, want.assignment)
    np.testing.assert_array_equal(got.reason, want.reason)
    np.testing.assert_array_equal(got.agent_load, want.agent_load)
    np.testing.assert_array_equal(got.order, want.order)
    assert got.cursor == want.cursor
    assert got.assignment.dtype == np.int64 and got.reason.dtype == np.int8


@settings(SETTINGS, max_examples=40)
@given(st.integers(0, 2**32 - 1), st.sampled_from(STRATEGY_CODES))
def test_kernel_matches_reference_on_larger_batches(seed: int, strategy: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 300, 40
    deps = [
        [int(d) for d in rng.integers(0, i, 2)] if i and rng.random() < 0.3 else []
        for i in range(n)
    ]
    indptr, indices = deps_to_csr(deps)
    batch = {
        "priority": rng.integers(0, 5, n),
        "task_caps": rng.integers(0, 64, n).astype(np.uint64)
        & rng.integers(0, 64, n).astype(np.uint64),
        "task_cost": rng.uniform(0.0, 2.0, n),
        "agent_load": rng.uniform(0.0, 5.0, m),
        "agent_capacity": rng.uniform(5.0, 20.0, m),
        "agent_caps": rng.integers(0, 64, m).astype(np.uint64),
        "agent_health": rng.choice([0, 0, 0, 1, 2, 3], m).astype(np.int8),
        "dep_indptr": indptr,
        "dep_indices": indices,
        "strategy": strategy,
        "cursor": int(rng.integers(0, m)),
    }
    same_as_reference(batch)


@pytest.mark.parametrize("strategy", STRATEGY_CODES)
def test_extreme_priorities_match_reference(strategy: int) -> None:
    # Priorities spanning all of int64 take the comparison sort, not the counting sort.
    info = np.iinfo(np.int64)
    rng = np.random.default_rng(strategy)
    priority = rng.choice([info.min, info.min + 1, -1, 0, 1, info.max - 1, info.max], 200)
    indptr, indices = deps_to_csr(
        [[int(rng.integers(0, i))] if i % 3 == 1 else [] for i in range(200)]
    )
    batch = {
        **simple(200, priority=priority, strategy=strategy, task_cost=rng.uniform(0, 1, 200)),
        "dep_indptr": indptr,
        "dep_indices": indices,
    }
    got = same_as_reference(batch)
    ranked = [(-int(priority[t]), int(t)) for t in got.order if not deps_of(batch, int(t))]
    assert ranked == sorted(ranked)


@pytest.mark.parametrize("strategy", STRATEGY_CODES)
def test_kernel_matches_reference_on_a_batch_past_one_summary_word(strategy: int) -> None:
    # Over 4,096 tasks the set of freed tasks spans two summary words; few priority levels,
    # costs and loads from small sets (ties everywhere), full and unhealthy agents, cycles.
    rng = np.random.default_rng(100 + strategy)
    n, m = 5000, 48
    deps = [
        [int(d) for d in rng.integers(0, n, int(rng.integers(1, 3)))] if rng.random() < 0.25 else []
        for _ in range(n)
    ]
    deps[4100].append(4600)  # a cycle, and tasks downstream of it
    deps[4600].append(4100)
    indptr, indices = deps_to_csr(deps)
    batch = {
        "priority": rng.integers(0, 4, n),
        "task_caps": rng.integers(0, 8, n).astype(np.uint64)
        & rng.integers(0, 8, n).astype(np.uint64),
        "task_cost": rng.choice([0.0, 0.5, 1.0, 2.0], n),
        "agent_load": rng.choice([0.0, 1.0, 3.0], m),
        "agent_capacity": rng.choice([20.0, 60.0, 200.0, math.inf], m),
        "agent_caps": rng.integers(0, 8, m).astype(np.uint64),
        "agent_health": rng.choice([0, 0, 0, 1, 2, 3], m).astype(np.int8),
        "dep_indptr": indptr,
        "dep_indices": indices,
        "strategy": strategy,
        "cursor": int(rng.integers(0, m)),
    }
    got = same_as_reference(batch)
    assert (got.reason == c.DEPENDENCY_CYCLE).any() and (got.reason == c.ASSIGNED).any()


@pytest.mark.parametrize("strategy", STRATEGY_CODES)
def test_kernel_matches_reference_without_dependencies_on_many_agents(strategy: int) -> None:
    # The worker's batches have no dependencies (the kernel then skips their bookkeeping); with
    # 260 agents a placed agent moves past a hundred or more in the ranking (one memmove of
    # several cache lines, of the uint32 ranks and, under CAPABILITY, the uint64 bits).
    rng = np.random.default_rng(400 + strategy)
    n, m = 2000, 260
    batch = {
        "priority": rng.integers(0, 6, n),
        "task_caps": rng.integers(0, 16, n).astype(np.uint64)
        & rng.integers(0, 16, n).astype(np.uint64),
        "task_cost": rng.choice([0.5, 1.0, 2.0, rng.uniform(0.1, 1.0)], n),
        "agent_load": rng.uniform(0.0, 4.0, m),
        "agent_capacity": rng.choice([5.0, 6.0, 8.0, 10.0], m),
        "agent_caps": rng.integers(0, 16, m).astype(np.uint64),
        "agent_health": rng.choice([0, 0, 0, 0, 1, 2, 3], m).astype(np.int8),
        "strategy": strategy,
        "cursor": int(rng.integers(0, m)),
    }
    got = same_as_reference(batch)
    assert (got.reason == c.ASSIGNED).any() and (got.reason != c.ASSIGNED).any()


def same_as_reference(batch: dict[str, Any]) -> Any:
    """The kernel's placement of ``batch``, asserted equal, array by array, to the reference's."""
    got, want = run(batch), run(batch, "python")
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    return got


@pytest.mark.parametrize("strategy", STRATEGY_CODES)
def test_kernel_matches_reference_with_high_capability_bits(strategy: int) -> None:
    # Agents with up to all 64 bits: the capability search starts at the group of agents with
    # as many bits as the task needs, up to the last group.
    rng = np.random.default_rng(200 + strategy)
    n, m = 400, 40
    bits = np.array([0, 1, 1 << 62, 1 << 63, (1 << 63) | 1], dtype=np.uint64)
    agent_caps = rng.choice(bits, m) | rng.choice(bits, m)
    agent_caps[:3] = np.uint64(2**64 - 1)
    batch = {
        "priority": rng.integers(-1, 2, n),
        "task_caps": rng.choice(bits, n),
        "task_cost": rng.uniform(0.0, 1.0, n),
        "agent_load": rng.uniform(0.0, 2.0, m),
        "agent_capacity": rng.choice([5.0, 10.0, math.inf], m),
        "agent_caps": agent_caps,
        "agent_health": rng.choice([0, 1, 2], m).astype(np.int8),
        "strategy": strategy,
    }
    same_as_reference(batch)


@pytest.mark.parametrize("least_cost", [0.0, 0.25])
@pytest.mark.parametrize("strategy", STRATEGY_CODES)
def test_kernel_matches_reference_as_agents_fill_up(strategy: int, least_cost: float) -> None:
    # Most agents fill up during the batch: the kernel drops an agent from its ranking once the
    # batch's cheapest task no longer fits it; loads start at, under and over capacity, with
    # ties everywhere (costs, loads and capacities from small sets; -0.0 among the loads).
    rng = np.random.default_rng(300 + strategy)
    n, m = 2000, 30
    deps = [[int(rng.integers(0, i))] if i and rng.random() < 0.2 else [] for i in range(n)]
    indptr, indices = deps_to_csr(deps)
    batch = {
        "priority": rng.integers(0, 3, n),
        "task_caps": rng.integers(0, 4, n).astype(np.uint64),
        "task_cost": rng.choice([least_cost, 0.25, 0.5, 1.0], n),
        "agent_load": rng.choice([-0.0, 0.0, 1.0, 2.0, 9.0], m),
        "agent_capacity": rng.choice([1.0, 2.0, 3.0, 20.0], m),
        "agent_caps": rng.integers(0, 4, m).astype(np.uint64),
        "agent_health": rng.choice([0, 0, 0, 1, 2], m).astype(np.int8),
        "dep_indptr": indptr,
        "dep_indices": indices,
        "strategy": strategy,
        "cursor": int(rng.integers(0, m)),
    }
    got = same_as_reference(batch)
    assert (got.reason == c.ALL_CAPABLE_AGENTS_FULL).any() and (got.reason == c.ASSIGNED).any()


# --- invariants ---------------------------------------------------------------------------------


@SETTINGS
@given(batches())
def test_invariants(batch: dict[str, Any]) -> None:
    before = {k: v.copy() for k, v in batch.items() if isinstance(v, np.ndarray)}
    res = run(batch)
    for k, v in before.items():
        np.testing.assert_array_equal(batch[k], v, err_msg=f"{k} was modified")

    placed = res.assignment >= 0
    assert ((res.reason == c.ASSIGNED) == placed).all()
    assert sorted(res.order.tolist()) == np.flatnonzero(placed).tolist()

    # Replaying the placements in order reproduces the loads, and nobody went over capacity.
    load = batch["agent_load"].copy()
    position = {int(t): i for i, t in enumerate(res.order)}
    for t in res.order.tolist():
        a = res.assignment[t]
        assert load[a] + batch["task_cost"][t] <= batch["agent_capacity"][a]
        load[a] += batch["task_cost"][t]
        # Only capable, healthy or degraded agents receive work.
        need = batch["task_caps"][t]
        assert batch["agent_caps"][a] & need == need
        assert batch["agent_health"][a] in (c.HEALTHY, c.DEGRADED)
        # Every dependency was placed, and placed earlier.
        for d in deps_of(batch, t):
            assert d in position and position[d] < position[t]
    np.testing.assert_array_equal(load, res.agent_load)

    for t in np.flatnonzero(~placed).tolist():
        assert res.reason[t] in c.REASON_NAMES and res.reason[t] != c.ASSIGNED
    if batch["strategy"] != c.ROUND_ROBIN:
        assert res.cursor == batch["cursor"] % max(1, len(batch["agent_load"]))


@SETTINGS
@given(batches(with_deps=False))
def test_without_dependencies_order_is_stable_by_priority(batch: dict[str, Any]) -> None:
    res = run(batch)
    keys = [(-int(batch["priority"][t]), int(t)) for t in res.order]
    assert keys == sorted(keys)
    assert not np.isin(res.reason, [c.DEPENDENCY_CYCLE, c.DEPENDENCY_UNASSIGNED]).any()


# --- strategies, on hand-made examples ----------------------------------------------------------


def simple(n_tasks: int, **overrides: Any) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "priority": np.zeros(n_tasks, np.int64),
        "task_caps": np.zeros(n_tasks, np.uint64),
        "task_cost": np.ones(n_tasks),
        "agent_load": np.zeros(3),
        "agent_capacity": np.full(3, 10.0),
        "agent_caps": np.zeros(3, np.uint64),
        "agent_health": np.zeros(3, np.int8),
        "strategy": c.LEAST_LOADED,
    }
    batch.update(overrides)
    return batch


def test_round_robin_cursor_persists_between_batches() -> None:
    res = schedule(**simple(4, strategy="round_robin", cursor=1))
    assert res.assignment.tolist() == [1, 2, 0, 1]
    assert res.cursor == 2
    res = schedule(**simple(2, strategy="round_robin", cursor=res.cursor))
    assert res.assignment.tolist() == [2, 0]
    assert res.cursor == 1


def test_round_robin_skips_unhealthy_agents() -> None:
    health = np.array([0, 3, 1], np.int8)
    res = schedule(**simple(3, strategy="round_robin", agent_health=health))
    assert res.assignment.tolist() == [0, 2, 0]


def test_least_loaded_and_load_balanced_differ_by_capacity() -> None:
    load = np.array([2.0, 3.0, 9.0])
    capacity = np.array([4.0, 30.0, 10.0])
    least = schedule(**simple(1, agent_load=load, agent_capacity=capacity))
    balanced = schedule(
        **simple(1, agent_load=load, agent_capacity=capacity, strategy=c.LOAD_BALANCED)
    )
    assert least.assignment.tolist() == [0]
    assert balanced.assignment.tolist() == [1]


def test_capability_prefers_best_fit_then_lowest_ratio() -> None:
    caps = np.array([0b1111, 0b0011, 0b0111], np.uint64)
    load = np.array([0.0, 5.0, 0.0])
    batch = simple(2, task_caps=np.array([0b0001, 0b0100], np.uint64), agent_caps=caps)
    res = schedule(**{**batch, "agent_load": load, "strategy": "capability"})
    assert res.assignment.tolist() == [1, 2]
    # Equal fit: the lower load ratio wins.
    res = schedule(
        **simple(
            1,
            agent_caps=np.array([1, 1, 1], np.uint64),
            strategy="capability",
            agent_load=np.array([5.0, 1.0, 1.0]),
            agent_capacity=np.array([10.0, 10.0, 4.0]),
        )
    )
    assert res.assignment.tolist() == [1]


def test_priority_order_and_fullness() -> None:
    batch = simple(
        3,
        priority=np.array([1, 5, 1]),
        task_cost=np.array([4.0, 4.0, 4.0]),
        agent_capacity=np.array([5.0, 5.0, 0.5]),
    )
    res = schedule(**batch)
    assert res.order.tolist() == [1, 0]
    assert res.assignment.tolist() == [1, 0, -1]
    assert res.reason.tolist() == [c.ASSIGNED, c.ASSIGNED, c.ALL_CAPABLE_AGENTS_FULL]


def test_reasons_for_capability_and_health() -> None:
    batch = simple(
        2,
        task_caps=np.array([0b1000, 0b0100], np.uint64),
        agent_caps=np.array([0b0100, 0b0011, 0b0011], np.uint64),
        agent_health=np.array([2, 0, 0], np.int8),
    )
    res = schedule(**batch)
    assert res.reason.tolist() == [c.NO_CAPABLE_AGENT, c.NO_HEALTHY_CAPABLE_AGENT]
    assert res.assignment.tolist() == [-1, -1]


def test_dependencies_cycles_and_their_dependents() -> None:
    # 0 <- 1 (normal); 2 <-> 3 (cycle); 4 depends on the cycle; 5 on itself; 6 on an unplaceable 7.
    deps = [[], [0], [3], [2], [3], [5], [7], []]
    indptr, indices = deps_to_csr(deps)
    caps = np.zeros(8, np.uint64)
    caps[7] = 0b1000
    res = schedule(
        **simple(8, priority=np.arange(8), task_caps=caps), dep_indptr=indptr, dep_indices=indices
    )
    r = res.reason.tolist()
    assert r[0] == r[1] == c.ASSIGNED
    assert r[2] == r[3] == r[5] == c.DEPENDENCY_CYCLE
    assert r[4] == c.DEPENDENCY_UNASSIGNED
    assert r[7] == c.NO_CAPABLE_AGENT and r[6] == c.DEPENDENCY_UNASSIGNED
    assert res.order.tolist() == [0, 1]


def test_dependency_beats_priority() -> None:
    indptr, indices = deps_to_csr([[1], []])
    res = schedule(**simple(2, priority=np.array([9, 0])), dep_indptr=indptr, dep_indices=indices)
    assert res.order.tolist() == [1, 0]


def test_accepts_lists_and_no_agents() -> None:
    res = schedule([1, 2], [0, 1], [1.0, 1.0], [], [], [], [], strategy="least_loaded")
    assert res.assignment.tolist() == [-1, -1]
    assert res.reason.tolist() == [c.NO_CAPABLE_AGENT] * 2
    empty = schedule([], [], [], [0.0], [1.0], [0], [0], strategy=0, cursor=7)
    assert empty.order.size == 0 and empty.cursor == 0


# --- input validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"task_cost": np.ones(2)}, "task_cost has length 2"),
        ({"task_cost": np.array([1.0, -1.0, 0.0])}, r"task_cost\[1\]"),
        ({"task_cost": np.array([1.0, np.nan, 0.0])}, r"task_cost\[1\]"),
        ({"agent_capacity": np.array([1.0, 0.0, 1.0])}, r"agent_capacity\[1\]"),
        ({"agent_load": np.array([1.0, np.inf, 1.0])}, r"agent_load\[1\]"),
        ({"agent_health": np.array([0, 4, 0])}, "agent_health codes"),
        ({"priority": np.array([1.5, 0.0, 0.0])}, "priority must have dtype int64"),
        ({"task_caps": np.array([-1, 0, 0])}, "task_caps has values"),
        ({"agent_caps": np.zeros((3, 1), np.uint64)}, "must be 1-D"),
        ({"strategy": "fastest"}, "unknown strategy"),
        ({"strategy": 9}, "unknown strategy code"),
        ({"strategy": True}, "must be an integer"),
        ({"cursor": -1}, "cursor must be >= 0"),
        ({"dep_indptr": np.array([0, 0, 0, 0])}, "both dep_indptr and dep_indices"),
        ({"dep_indptr": np.array([0, 1, 0, 1]), "dep_indices": np.array([2])}, "never decrease"),
        ({"dep_indptr": np.array([0, 1, 1, 1]), "dep_indices": np.array([3])}, "dep_indices must"),
        (
            {"dep_indptr": np.array([0, 1, 1]), "dep_indices": np.array([0])},
            "dep_indptr has length",
        ),
        ({"backend": "cuda"}, "unknown backend"),
    ],
)
def test_bad_inputs_raise_kernel_input_error(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(KernelInputError, match=match) as info:
        schedule(**simple(3, **overrides))
    assert isinstance(info.value, ValueError)
