"""Value checks of :func:`multiswarm.kernels.scheduling.schedule`'s inputs, compiled.

One pass over each array in a kernel instead of several NumPy passes (``isnan``, comparisons,
``any``, ``diff``) and their temporaries: the wrapper's checks cost a few microseconds, not a
tenth of the batch. They only find the first offending element; the wrapper words the error.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._jit import njit

__all__ = ["BAD_CSR_RANGE", "BAD_CSR_SHAPE", "BAD_HEALTH", "check_agents_csr", "first_bad_value"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]

#: Codes returned by :func:`check_agents_csr`.
BAD_HEALTH = 1
BAD_CSR_SHAPE = 2
BAD_CSR_RANGE = 3


@njit
def first_bad_value(arr: F64, low: float, allow_inf: bool, strict: bool) -> int:
    """Index of the first element that is NaN, infinite (unless ``allow_inf``) or below
    ``low`` (at or below if ``strict``); -1 if none."""
    for i in range(arr.shape[0]):
        x = arr[i]
        if math.isnan(x) or (x <= low if strict else x < low) or (not allow_inf and math.isinf(x)):
            return i
    return -1


@njit
def check_agents_csr(health: I8, low: int, high: int, indptr: I64, indices: I64, n: int) -> int:
    """0, or the code of the first problem: a health code outside ``[low, high]``, a
    ``dep_indptr`` that does not start at 0, decreases or does not end at ``len(dep_indices)``,
    or a dependency outside ``[0, n)``."""
    for a in range(health.shape[0]):
        if health[a] < low or health[a] > high:
            return BAD_HEALTH
    if indptr[0] != 0 or indptr[indptr.shape[0] - 1] != indices.shape[0]:
        return BAD_CSR_SHAPE
    for t in range(indptr.shape[0] - 1):
        if indptr[t + 1] < indptr[t]:
            return BAD_CSR_SHAPE
    for e in range(indices.shape[0]):
        if indices[e] < 0 or indices[e] >= n:
            return BAD_CSR_RANGE
    return 0
