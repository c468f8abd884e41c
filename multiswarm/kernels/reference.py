"""Plain-Python definition of what :func:`multiswarm.kernels.scheduling.schedule_kernel` returns.

Written for clarity, not speed, and independently of the kernel (Python lists, ``heapq``,
``min`` with key tuples, reachability by search instead of strongly connected components), so
that tests comparing the two catch mistakes in either. No Numba here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .reference_lists import schedule_lists

__all__ = ["reference_schedule"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]


def reference_schedule(
    priority: I64,
    task_caps: U64,
    task_cost: F64,
    agent_load: F64,
    agent_capacity: F64,
    agent_caps: U64,
    agent_health: I8,
    dep_indptr: I64,
    dep_indices: I64,
    strategy: int,
    cursor: int,
) -> tuple[I64, I8, F64, int, I64]:
    """Same parameters and results as :func:`~multiswarm.kernels.scheduling.schedule_kernel`."""
    n = len(priority)
    deps = [dep_indices[dep_indptr[i] : dep_indptr[i + 1]].tolist() for i in range(n)]
    assignment, reason, load, cursor, order = schedule_lists(
        priority.tolist(),
        task_caps.tolist(),
        task_cost.tolist(),
        agent_load.tolist(),
        agent_capacity.tolist(),
        agent_caps.tolist(),
        agent_health.tolist(),
        deps,
        strategy,
        cursor,
    )
    return (
        np.array(assignment, dtype=np.int64),
        np.array(reason, dtype=np.int8),
        np.array(load, dtype=np.float64),
        cursor,
        np.array(order, dtype=np.int64),
    )
