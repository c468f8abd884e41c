"""Plain-Python definition of what :func:`multiswarm.kernels.scheduling.schedule_kernel` returns.

Written for clarity, not speed, and independently of the kernel (Python lists, ``heapq``,
``min`` with key tuples, reachability by search instead of strongly connected components), so
that tests comparing the two catch mistakes in either. No Numba here.
"""

from __future__ import annotations

import heapq

import numpy as np
import numpy.typing as npt

from multiswarm.kernels.errors import KernelInputError

from .constants import (
    ALL_CAPABLE_AGENTS_FULL,
    ASSIGNED,
    CAPABILITY,
    DEGRADED,
    DEPENDENCY_CYCLE,
    DEPENDENCY_UNASSIGNED,
    HEALTHY,
    LEAST_LOADED,
    LOAD_BALANCED,
    NO_CAPABLE_AGENT,
    NO_HEALTHY_CAPABLE_AGENT,
    ROUND_ROBIN,
)

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
    n, m = len(priority), len(agent_load)
    prio = priority.tolist()
    need_of = task_caps.tolist()
    cost_of = task_cost.tolist()
    load = agent_load.tolist()
    capacity = agent_capacity.tolist()
    caps = agent_caps.tolist()
    live = [h in (HEALTHY, DEGRADED) for h in agent_health.tolist()]
    deps = [dep_indices[dep_indptr[i] : dep_indptr[i + 1]].tolist() for i in range(n)]
    dependents: list[list[int]] = [[] for _ in range(n)]
    for i, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(i)

    assignment = [-1] * n
    reason = [DEPENDENCY_CYCLE] * n
    decided = [False] * n
    order: list[int] = []
    missing = [len(ds) for ds in deps]
    ready = [(-prio[i], i) for i in range(n) if missing[i] == 0]
    heapq.heapify(ready)
    while ready:
        _, t = heapq.heappop(ready)
        decided[t] = True
        need, cost = need_of[t], cost_of[t]
        if any(assignment[d] < 0 for d in deps[t]):
            reason[t] = DEPENDENCY_UNASSIGNED
        else:
            fits = [
                a
                for a in range(m)
                if live[a] and caps[a] & need == need and load[a] + cost <= capacity[a]
            ]
            if fits:
                if strategy == ROUND_ROBIN:
                    a = min(fits, key=lambda a: (a - cursor) % m)
                    cursor = (a + 1) % m
                elif strategy == LEAST_LOADED:
                    a = min(fits, key=lambda a: (load[a], a))
                elif strategy == LOAD_BALANCED:
                    a = min(fits, key=lambda a: (load[a] / capacity[a], a))
                elif strategy == CAPABILITY:
                    a = min(
                        fits,
                        key=lambda a: ((caps[a] & ~need).bit_count(), load[a] / capacity[a], a),
                    )
                else:
                    raise KernelInputError(f"unknown strategy code {strategy}")
                assignment[t] = a
                reason[t] = ASSIGNED
                load[a] += cost
                order.append(t)
            else:
                capable = [a for a in range(m) if caps[a] & need == need]
                if not capable:
                    reason[t] = NO_CAPABLE_AGENT
                elif not any(live[a] for a in capable):
                    reason[t] = NO_HEALTHY_CAPABLE_AGENT
                else:
                    reason[t] = ALL_CAPABLE_AGENTS_FULL
        for u in dependents[t]:
            missing[u] -= 1
            if missing[u] == 0:
                heapq.heappush(ready, (-prio[u], u))

    undecided = {t for t in range(n) if not decided[t]}
    for t in undecided:
        on_cycle = _reaches_itself(t, deps, undecided)
        reason[t] = DEPENDENCY_CYCLE if on_cycle else DEPENDENCY_UNASSIGNED

    return (
        np.array(assignment, dtype=np.int64),
        np.array(reason, dtype=np.int8),
        np.array(load, dtype=np.float64),
        cursor,
        np.array(order, dtype=np.int64),
    )


def _reaches_itself(task: int, deps: list[list[int]], among: set[int]) -> bool:
    """Whether following dependencies from ``task``, through ``among`` only, leads back to it."""
    stack = [d for d in deps[task] if d in among]
    seen: set[int] = set()
    while stack:
        v = stack.pop()
        if v == task:
            return True
        if v not in seen:
            seen.add(v)
            stack.extend(d for d in deps[v] if d in among)
    return False
