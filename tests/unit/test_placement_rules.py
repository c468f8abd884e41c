"""The Python placement of small batches gives the kernel's picks and cursor (decision 69)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from multiswarm.kernels.constants import STRATEGIES
from multiswarm.kernels.reference import reference_schedule
from multiswarm.placement_rules import place_small


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_small_batches_place_as_the_reference_kernel(strategy: str) -> None:
    rng = random.Random(69)
    for _ in range(400):
        n, m = rng.randint(0, 8), rng.randint(0, 8)
        concurrency = rng.randint(1, 4)
        priorities = [rng.randint(0, 2) for _ in range(n)]
        needs = [rng.choice([0, 0, 1, 2, 3, 1 << 63]) for _ in range(n)]
        load = [rng.randint(0, concurrency) for _ in range(m)]
        caps = [rng.choice([3, 3, 1, 2, 7]) for _ in range(m)]
        live = [rng.random() < 0.8 for _ in range(m)]
        cursor = rng.randint(0, 9)
        picks, new_cursor = place_small(
            priorities, needs, load, concurrency, caps, live, strategy, cursor
        )
        assignment, _reason, _load, want_cursor, _order = reference_schedule(
            -np.asarray(priorities, np.int64),
            np.asarray(needs, np.uint64),
            np.ones(n, np.float64),
            np.asarray(load, np.float64),
            np.full(m, float(concurrency)),
            np.asarray(caps, np.uint64),
            np.asarray([0 if ok else 3 for ok in live], np.int8),
            np.zeros(n + 1, np.int64),
            np.zeros(0, np.int64),
            STRATEGIES[strategy],
            cursor % m if m else 0,
        )
        assert picks == assignment.tolist()
        assert new_cursor == want_cursor
