"""The scheduling kernel's plain-Python definition on Python lists: no NumPy, no Numba.

:func:`multiswarm.kernels.reference.reference_schedule` is this on NumPy arrays (tests compare
it with the kernel). A worker also places its first batches with it, before NumPy and the
kernels are loaded (decision 87): importing NumPy takes ~0.1 s of CPU, on a start-up that is
CPU-bound until the first task runs.
"""

from __future__ import annotations

import heapq

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

__all__ = ["schedule_lists"]


def schedule_lists(
    prio: list[int],
    need_of: list[int],
    cost_of: list[float],
    load: list[float],
    capacity: list[float],
    caps: list[int],
    health: list[int],
    deps: list[list[int]],
    strategy: int,
    cursor: int,
) -> tuple[list[int], list[int], list[float], int, list[int]]:
    """:func:`~multiswarm.kernels.scheduling.schedule_kernel` on lists: per task its priority
    (higher first), required capability bits, cost and dependencies (indices into the batch);
    per agent its load, capacity, capability bits and health code. ``load`` is updated in
    place. Returns the agent per task (-1: none), the reason code per task, the agents' loads,
    the next round-robin cursor and the tasks placed, in order. Raises KernelInputError for an
    unknown strategy code."""
    n, m = len(prio), len(load)
    live = [h in (HEALTHY, DEGRADED) for h in health]
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

    return assignment, reason, load, cursor, order


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
