"""The scheduling kernel's head-and-tree ranking (decision 77) against the reference.

LEAST_LOADED and LOAD_BALANCED switch from the sorted ranking to a head of the best agents and
a tournament tree over the rest once a placed agent moves past many others; these batches are
long enough, with enough agents, for the switch, and full of ties (the tree breaks them by
agent index from its leaves' order, not by comparing indexes).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiswarm.kernels import constants as c
from multiswarm.kernels.scheduling import schedule

KEYED = [c.LEAST_LOADED, c.LOAD_BALANCED]


def same_as_reference(batch: dict[str, Any]) -> Any:
    got = schedule(**batch)
    want = schedule(**batch, backend="python")
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    return got


def keyed_batch(seed: int, strategy: int, n: int, m: int, **agents: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    batch: dict[str, Any] = {
        "priority": rng.integers(0, 3, n),
        "task_caps": np.zeros(n, dtype=np.uint64),
        "task_cost": np.ones(n),
        "agent_load": np.zeros(m),
        "agent_capacity": np.full(m, 1e9),
        "agent_caps": np.zeros(m, dtype=np.uint64),
        "agent_health": np.zeros(m, dtype=np.int8),
        "strategy": strategy,
    }
    batch.update(agents)
    return batch


@pytest.mark.parametrize("strategy", KEYED)
def test_equal_agents_and_costs(strategy: int) -> None:
    # The worker's usual batch: every key ties, each placed agent goes behind all the others,
    # so the order of placement is the agents' index order, round after round.
    got = same_as_reference(keyed_batch(1, strategy, 3000, 300))
    assert np.bincount(got.assignment, minlength=300).tolist() == [10] * 300


@pytest.mark.parametrize("strategy", KEYED)
def test_ties_from_equal_ratios_and_signed_zeros(strategy: int) -> None:
    rng = np.random.default_rng(7 + strategy)
    m = 257  # one past a power of two: the tree's last leaves are empty
    capacity = rng.choice([2.0, 4.0, 8.0, math.inf], m) * 100
    finite = np.where(np.isinf(capacity), 100.0, capacity)
    load = rng.choice([-0.0, 0.0, 1.0, 2.0], m) * finite / 400  # ratios tie across capacities
    load[np.isinf(capacity)] = rng.choice([-0.0, 0.0, 3.0], int(np.isinf(capacity).sum()))
    batch = keyed_batch(
        8,
        strategy,
        4000,
        m,
        agent_load=load,
        agent_capacity=capacity,
        agent_health=rng.choice([0, 0, 0, 1, 2, 3], m).astype(np.int8),
    )
    batch["task_cost"] = rng.choice([0.25, 0.5, 1.0], 4000)
    same_as_reference(batch)


@pytest.mark.parametrize("unplaceable", [0.0, 0.05])
@pytest.mark.parametrize("strategy", KEYED)
def test_rare_capabilities_and_unplaceable_tasks(strategy: int, unplaceable: float) -> None:
    # A task only a few agents can take searches past the whole head (it grows from the tree
    # and shrinks back), until such searches have moved too many agents out of the tree; a
    # task no agent can take empties the tree: both turn the ranking back into a sorted one.
    rng = np.random.default_rng(30 + strategy)
    n, m = 3000, 200
    agent_caps = np.where(rng.random(m) < 0.05, 2, 1).astype(np.uint64)
    needs = np.array([0, 1, 2, 4], dtype=np.uint64)
    task_caps = rng.choice(needs, n, p=[0.65 - unplaceable, 0.2, 0.15, unplaceable])
    batch = keyed_batch(31, strategy, n, m, agent_caps=agent_caps)
    batch.update(task_caps=task_caps, task_cost=rng.uniform(0.1, 1.0, n))
    got = same_as_reference(batch)
    assert (got.reason == c.NO_CAPABLE_AGENT).any() == (unplaceable > 0)


@pytest.mark.parametrize("strategy", KEYED)
def test_agents_fill_up_after_the_switch(strategy: int) -> None:
    # Agents leave the head as they fill (the tree's best takes their place), down to none.
    rng = np.random.default_rng(50 + strategy)
    n, m = 6000, 100
    batch = keyed_batch(
        51,
        strategy,
        n,
        m,
        agent_capacity=rng.choice([30.0, 40.0, 50.0], m),
        agent_load=rng.choice([0.0, 5.0], m),
    )
    batch["task_cost"] = rng.choice([0.5, 1.0], n)
    got = same_as_reference(batch)
    assert (got.reason == c.ALL_CAPABLE_AGENTS_FULL).any()


# --- CAPABILITY's entries (decision 86) --------------------------------------------------------


def capability_batch(seed: int, n: int, m: int, near: bool) -> dict[str, Any]:
    """Agents with 0-4 of 6 bits, tasks needing 0-2; ``near``: loads such that many agents'
    load ratios share their top 32 bits (equal to ~1e-6) yet differ, or tie exactly."""
    rng = np.random.default_rng(seed)
    capacity = rng.choice([64.0, 128.0, 256.0, math.inf], m)
    if near:
        base = rng.choice([0.25, 0.5], m)
        load = base * np.where(np.isinf(capacity), 1.0, capacity)
        load += rng.choice([0.0, 0.0, 1e-12, 3e-11, 2e-9], m) * load
        load[np.isinf(capacity)] = rng.choice([-0.0, 0.0, 1.0], int(np.isinf(capacity).sum()))
    else:
        load = rng.uniform(0.0, 20.0, m)
    bits = np.uint64(1) << rng.integers(0, 6, (m, 4)).astype(np.uint64)
    held = rng.random((m, 4)) < [0.7, 0.6, 0.5, 0.3]
    agent_caps = np.bitwise_or.reduce(np.where(held, bits, np.uint64(0)), axis=1)
    need_bits = np.uint64(1) << rng.integers(0, 6, (n, 2)).astype(np.uint64)
    use = rng.random((n, 2)) < [0.6, 0.3]
    task_caps = np.bitwise_or.reduce(np.where(use, need_bits, np.uint64(0)), axis=1)
    # costs that are exact binary fractions, so equal ratios stay equal after placements
    cost = rng.choice([0.25, 0.5, 1.0], n) if near else rng.uniform(0.1, 1.0, n)
    return keyed_batch(
        seed,
        c.CAPABILITY,
        n,
        m,
        task_caps=task_caps.astype(np.uint64),
        task_cost=cost,
        agent_load=load,
        agent_capacity=capacity,
        agent_caps=agent_caps.astype(np.uint64),
        agent_health=rng.choice([0, 0, 0, 1, 2, 3], m).astype(np.int8),
    )


@pytest.mark.parametrize("near", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_capability_entries_and_near_ties(seed: int, near: bool) -> None:
    # The ranking's entries order agents by their keys' top 32 bits and compare the keys only
    # when those are equal: keys within ~1e-6 of each other, exact ties (then the index), and
    # -0.0 against 0.0 must all place as the reference's min does, as agents fill and leave.
    batch = capability_batch(100 * seed, 4000, 257, near)
    if near:
        ratio = batch["agent_load"] / batch["agent_capacity"] + 0.0
        top = ratio.view(np.int64) >> 31
        assert len(np.unique(top)) < len(np.unique(ratio))  # equal top bits, different keys
    got = same_as_reference(batch)
    assert (got.reason == c.ASSIGNED).any()


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 400),
    st.integers(1, 70),
    st.booleans(),
)
def test_capability_matches_reference_property(seed: int, n: int, m: int, near: bool) -> None:
    same_as_reference(capability_batch(seed, n, m, near))
