"""The compiled input checks (``kernels/_checks.py``) against plain NumPy definitions.

Since decision 86 each check first counts the good values without branches and only then
looks for the first bad one: both passes must agree on every kind of bad value.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from multiswarm.kernels._checks import (
    BAD_CSR_RANGE,
    BAD_CSR_SHAPE,
    BAD_HEALTH,
    check_agents_csr,
    first_bad_value,
)

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

VALUES = st.sampled_from(
    [0.0, -0.0, 1.0, 0.5, 1e308, math.inf, -math.inf, math.nan, -1.0, -1e-300, 5e-324]
)


def expected_first_bad(arr: np.ndarray, low: float, allow_inf: bool, strict: bool) -> int:
    bad = np.isnan(arr) | ((arr <= low) if strict else (arr < low))
    if not allow_inf:
        bad |= np.isinf(arr)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else -1


@SETTINGS
@given(
    st.lists(VALUES, max_size=40),
    st.integers(0, 40),
    st.sampled_from([0.0, 0.5]),
    st.booleans(),
    st.booleans(),
)
def test_first_bad_value(
    values: list[float], pad: int, low: float, allow_inf: bool, strict: bool
) -> None:
    # padded with good values so the counting pass runs over whole vectors and a tail
    arr = np.array([*([1.0] * pad), *values], dtype=np.float64)
    assert first_bad_value(arr, low, allow_inf, strict) == expected_first_bad(
        arr, low, allow_inf, strict
    )


def expected_csr(health: np.ndarray, indptr: np.ndarray, indices: np.ndarray, n: int) -> int:
    if ((health < 0) | (health > 3)).any():
        return BAD_HEALTH
    if indptr[0] != 0 or indptr[-1] != indices.size or (np.diff(indptr) < 0).any():
        return BAD_CSR_SHAPE
    if ((indices < 0) | (indices >= n)).any():
        return BAD_CSR_RANGE
    return 0


@SETTINGS
@given(
    st.lists(st.integers(-2, 5), max_size=20),
    st.lists(st.integers(-1, 6), min_size=1, max_size=12),
    st.lists(st.integers(-2, 12), max_size=20),
    st.integers(0, 10),
)
def test_check_agents_csr(health: list[int], indptr: list[int], indices: list[int], n: int) -> None:
    h = np.array(health, dtype=np.int8)
    ip = np.array(indptr, dtype=np.int64)
    ix = np.array(indices, dtype=np.int64)
    assert check_agents_csr(h, 0, 3, ip, ix, n) == expected_csr(h, ip, ix, n)
