"""Assign one batch of tasks to the agents of one swarm (DESIGN.md, Distribution to agents).

:func:`schedule` validates its inputs and runs :func:`schedule_kernel`, a Numba kernel over
arrays; :func:`multiswarm.kernels.reference.reference_schedule` is the plain-Python definition
of the expected answer, and ``backend="python"`` runs it instead.

Rules, shared by the kernel and the reference:

* Tasks are taken in a priority-respecting topological order: of the tasks whose in-batch
  dependencies have all been decided, the highest priority goes first, ties to the lowest index.
  Without dependencies this is a stable sort by descending priority.
* A task may go to an agent that is healthy or degraded, holds every capability bit the task
  requires (``agent_caps & task_caps == task_caps``) and has room
  (``load + cost <= capacity``). The chosen agent's load grows by the task's cost at once, so
  later tasks of the batch see it.
* A task that cannot be placed gets agent ``-1`` and a reason code from
  :mod:`multiswarm.kernels.constants`; so do its dependents (``DEPENDENCY_UNASSIGNED``).
  Tasks on a dependency cycle get ``DEPENDENCY_CYCLE``; tasks that only depend on a cycle get
  ``DEPENDENCY_UNASSIGNED``. Neither kind is ever placed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from ._jit import njit
from ._validate import as_array, as_index, check_length
from .constants import (
    ALL_CAPABLE_AGENTS_FULL,
    ASSIGNED,
    CAPABILITY,
    DEAD,
    DEGRADED,
    DEPENDENCY_CYCLE,
    DEPENDENCY_UNASSIGNED,
    HEALTHY,
    LEAST_LOADED,
    NO_CAPABLE_AGENT,
    NO_HEALTHY_CAPABLE_AGENT,
    ROUND_ROBIN,
    STRATEGIES,
)
from .errors import KernelInputError

__all__ = ["ScheduleResult", "deps_to_csr", "schedule", "schedule_kernel"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]


class ScheduleResult(NamedTuple):
    """What :func:`schedule` decided for one batch.

    Attributes
    ----------
    assignment
        ``int64[n_tasks]``: agent index per task, ``-1`` if not placed.
    reason
        ``int8[n_tasks]``: ``ASSIGNED`` or why the task was not placed (``constants.REASON_NAMES``).
    agent_load
        ``float64[n_agents]``: load after the batch, in the same units as the task costs.
    cursor
        Round-robin cursor to pass to the next batch (unchanged by the other strategies).
    order
        ``int64[n_placed]``: the placed tasks, in the order they were placed.
    """

    assignment: I64
    reason: I8
    agent_load: F64
    cursor: int
    order: I64


# --- kernel -------------------------------------------------------------------------------------


@njit
def _before(priority: I64, a: int, b: int) -> bool:
    """Whether task ``a`` is taken before task ``b``: higher priority, then lower index."""
    return bool(priority[a] > priority[b] or (priority[a] == priority[b] and a < b))


@njit
def _heap_push(heap: I64, size: int, priority: I64, task: int) -> int:
    """Push ``task`` on the binary heap ``heap[:size]``; return the new size."""
    i = size
    heap[i] = task
    while i > 0:
        parent = (i - 1) // 2
        if not _before(priority, heap[i], heap[parent]):
            break
        heap[i], heap[parent] = heap[parent], heap[i]
        i = parent
    return size + 1


@njit
def _heap_pop(heap: I64, size: int, priority: I64) -> int:
    """Remove the first task from the heap ``heap[:size]`` and return it (size shrinks by 1)."""
    top = heap[0]
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(priority, heap[child + 1], heap[child]):
            child += 1
        if not _before(priority, heap[child], heap[i]):
            break
        heap[i], heap[child] = heap[child], heap[i]
        i = child
    return int(top)


@njit
def _popcount(x: np.uint64) -> int:
    count = 0
    while x != 0:
        x &= x - np.uint64(1)
        count += 1
    return count


@njit
def _pick_round_robin(
    need: np.uint64, cost: float, load: F64, capacity: F64, caps: U64, health: I8, cursor: int
) -> int:
    """First eligible agent at or after ``cursor``, wrapping around; -1 if none."""
    m = load.shape[0]
    for k in range(m):
        a = cursor + k
        if a >= m:
            a -= m
        if health[a] <= DEGRADED and (caps[a] & need) == need and load[a] + cost <= capacity[a]:
            return a
    return -1


@njit
def _precedes(a: int, b: int, fit: I64, key: F64) -> bool:
    """Whether agent ``a`` ranks before agent ``b``: by ``(fit, key, index)``."""
    return bool(
        fit[a] < fit[b] or (fit[a] == fit[b] and (key[a] < key[b] or (key[a] == key[b] and a < b)))
    )


@njit
def _rank_agents(
    load: F64, capacity: F64, caps: U64, health: I8, strategy: int
) -> tuple[I64, I64, F64]:
    """Healthy and degraded agents sorted by the strategy's preference, best first.

    The key is ``(fit, key, index)``: ``key`` is the load (LEAST_LOADED) or the load ratio;
    ``fit`` is 0 except for CAPABILITY, where it is the agent's number of capability bits. For
    an agent holding every bit a task needs, its bits beyond the task's number ``fit`` minus the
    task's own count, so ranking by ``fit`` ranks by extra bits for every task at once.
    Returns ``(rank, fit, key)``; ``fit`` and ``key`` are indexed by agent.
    """
    m = load.shape[0]
    fit = np.zeros(m, dtype=np.int64)
    key = np.empty(m, dtype=np.float64)
    live = np.empty(m, dtype=np.int64)
    n_live = 0
    for a in range(m):
        key[a] = load[a] if strategy == LEAST_LOADED else load[a] / capacity[a]
        if strategy == CAPABILITY:
            fit[a] = _popcount(caps[a])
        if health[a] <= DEGRADED:
            live[n_live] = a
            n_live += 1
    rank = live[:n_live]
    # Stable sorts, last key first: the index order of ``live`` breaks the remaining ties.
    rank = rank[np.argsort(key[rank], kind="mergesort")]
    rank = rank[np.argsort(fit[rank], kind="mergesort")]
    return rank, fit, key


@njit
def _pick_ranked(
    need: np.uint64, cost: float, load: F64, capacity: F64, caps: U64, rank: I64
) -> int:
    """Position in ``rank`` of the first agent that has the capabilities and room; -1 if none."""
    for p in range(rank.shape[0]):
        a = rank[p]
        if (caps[a] & need) == need and load[a] + cost <= capacity[a]:
            return p
    return -1


@njit
def _demote(rank: I64, p: int, fit: I64, key: F64) -> None:
    """Move ``rank[p]`` right to its place after its key grew (keys never shrink: costs >= 0).

    Under least-loaded the agents' loads converge, and a placed agent then moves past most of
    the others: find the place by bisection and shift with a plain copy loop, not by swaps.
    """
    a = rank[p]
    lo, hi = p + 1, rank.shape[0]  # the place is the first q in [lo, hi) with a before rank[q]
    while lo < hi:
        mid = (lo + hi) // 2
        if _precedes(a, rank[mid], fit, key):
            hi = mid
        else:
            lo = mid + 1
    for i in range(p, lo - 1):
        rank[i] = rank[i + 1]
    rank[lo - 1] = a


@njit
def _failure_reason(need: np.uint64, caps: U64, health: I8) -> int:
    """Why no agent was picked, knowing that every eligible capable agent was full."""
    any_capable = False
    for a in range(caps.shape[0]):
        if (caps[a] & need) == need:
            if health[a] <= DEGRADED:
                return ALL_CAPABLE_AGENTS_FULL
            any_capable = True
    return NO_HEALTHY_CAPABLE_AGENT if any_capable else NO_CAPABLE_AGENT


@njit
def _reverse_csr(n: int, indptr: I64, indices: I64) -> tuple[I64, I64]:
    """Dependents of each task, as CSR, from the dependencies' CSR."""
    rev_indptr = np.zeros(n + 1, dtype=np.int64)
    for e in range(indices.shape[0]):
        rev_indptr[indices[e] + 1] += 1
    for t in range(n):
        rev_indptr[t + 1] += rev_indptr[t]
    fill = rev_indptr[:n].copy()
    rev_indices = np.empty(indices.shape[0], dtype=np.int64)
    for t in range(n):
        for e in range(indptr[t], indptr[t + 1]):
            d = indices[e]
            rev_indices[fill[d]] = t
            fill[d] += 1
    return rev_indptr, rev_indices


@njit
def _explain_undecided(
    decided: npt.NDArray[np.bool_],
    indptr: I64,
    indices: I64,
    rev_indptr: I64,
    rev_indices: I64,
    reason: I8,
) -> None:
    """Set the reason of every undecided task: on a cycle, or only downstream of one.

    Undecided tasks are those the topological pass never reached; each waits on another
    undecided task. Strongly connected components among them (Kosaraju, iterative) tell the
    tasks on a cycle (component of two or more, or a self-dependency) from the rest.
    """
    n = decided.shape[0]
    seen = np.zeros(n, dtype=np.bool_)
    finished = np.empty(n, dtype=np.int64)
    n_finished = 0
    stack = np.empty(n, dtype=np.int64)
    edge = np.empty(n, dtype=np.int64)
    for s in range(n):
        if decided[s] or seen[s]:
            continue
        seen[s] = True
        top = 0
        stack[0], edge[0] = s, indptr[s]
        while top >= 0:
            v, e = stack[top], edge[top]
            if e < indptr[v + 1]:
                edge[top] = e + 1
                w = indices[e]
                if not decided[w] and not seen[w]:
                    seen[w] = True
                    top += 1
                    stack[top], edge[top] = w, indptr[w]
            else:
                finished[n_finished] = v
                n_finished += 1
                top -= 1
    component = np.full(n, -1, dtype=np.int64)
    size = np.zeros(n, dtype=np.int64)
    n_components = 0
    for i in range(n_finished - 1, -1, -1):
        s = finished[i]
        if component[s] >= 0:
            continue
        c = n_components
        n_components += 1
        component[s] = c
        top = 0
        stack[0] = s
        while top >= 0:
            v = stack[top]
            top -= 1
            size[c] += 1
            for e in range(rev_indptr[v], rev_indptr[v + 1]):
                w = rev_indices[e]
                if not decided[w] and component[w] < 0:
                    component[w] = c
                    top += 1
                    stack[top] = w
    for v in range(n):
        if decided[v]:
            continue
        on_cycle = size[component[v]] > 1
        for e in range(indptr[v], indptr[v + 1]):
            if indices[e] == v:
                on_cycle = True
        reason[v] = DEPENDENCY_CYCLE if on_cycle else DEPENDENCY_UNASSIGNED


@njit
def schedule_kernel(
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
    """Place a batch of tasks; the unchecked core of :func:`schedule` (same parameters).

    Inputs must already be valid (as :func:`schedule` ensures): out-of-range indices are not
    checked. Returns ``(assignment, reason, agent_load, cursor, order)`` as in
    :class:`ScheduleResult`; the input arrays are not modified.
    """
    n = priority.shape[0]
    m = agent_load.shape[0]
    load = agent_load.copy()
    assignment = np.full(n, -1, dtype=np.int64)
    reason = np.full(n, DEPENDENCY_CYCLE, dtype=np.int8)
    order = np.empty(n, dtype=np.int64)
    n_placed = 0

    # Health does not change during a batch, and only the chosen agent's key changes after a
    # placement: keep the eligible agents ranked, so a search usually stops at the first few.
    rank, fit, key = _rank_agents(agent_load, agent_capacity, agent_caps, agent_health, strategy)

    rev_indptr, rev_indices = _reverse_csr(n, dep_indptr, dep_indices)
    waiting = dep_indptr[1:] - dep_indptr[:-1]
    blocked = np.zeros(n, dtype=np.bool_)
    decided = np.zeros(n, dtype=np.bool_)
    heap = np.empty(n, dtype=np.int64)
    size = 0
    for t in range(n):
        if waiting[t] == 0:
            size = _heap_push(heap, size, priority, t)

    while size > 0:
        t = _heap_pop(heap, size, priority)
        size -= 1
        decided[t] = True
        need = task_caps[t]
        cost = task_cost[t]
        if blocked[t]:
            reason[t] = DEPENDENCY_UNASSIGNED
        else:
            if strategy == ROUND_ROBIN:
                a = _pick_round_robin(
                    need, cost, load, agent_capacity, agent_caps, agent_health, cursor
                )
                if a >= 0:
                    cursor = a + 1 if a + 1 < m else 0
            else:
                p = _pick_ranked(need, cost, load, agent_capacity, agent_caps, rank)
                a = rank[p] if p >= 0 else -1
            if a >= 0:
                assignment[t] = a
                reason[t] = ASSIGNED
                load[a] += cost
                order[n_placed] = t
                n_placed += 1
                if strategy != ROUND_ROBIN:
                    key[a] = load[a] if strategy == LEAST_LOADED else load[a] / agent_capacity[a]
                    _demote(rank, p, fit, key)
            else:
                reason[t] = _failure_reason(need, agent_caps, agent_health)
        for e in range(rev_indptr[t], rev_indptr[t + 1]):
            u = rev_indices[e]
            if assignment[t] < 0:
                blocked[u] = True
            waiting[u] -= 1
            if waiting[u] == 0:
                size = _heap_push(heap, size, priority, u)

    if not decided.all():
        _explain_undecided(decided, dep_indptr, dep_indices, rev_indptr, rev_indices, reason)
    return assignment, reason, load, cursor, order[:n_placed].copy()


# --- wrapper ------------------------------------------------------------------------------------


def deps_to_csr(deps: Sequence[Sequence[int]]) -> tuple[I64, I64]:
    """Build the ``(dep_indptr, dep_indices)`` arrays from one list of dependencies per task.

    Parameters
    ----------
    deps
        ``deps[i]`` lists the indices, within the batch, of the tasks task ``i`` waits for.

    Returns
    -------
    dep_indptr
        ``int64[len(deps) + 1]``.
    dep_indices
        ``int64[total number of dependencies]``.
    """
    indptr = np.zeros(len(deps) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(d) for d in deps], dtype=np.int64)
    indices = np.fromiter((int(x) for d in deps for x in d), dtype=np.int64, count=int(indptr[-1]))
    return indptr, indices


def _strategy_code(strategy: int | str) -> int:
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise KernelInputError(
                f"unknown strategy {strategy!r}; expected one of {sorted(STRATEGIES)}"
            )
        return STRATEGIES[strategy]
    code = as_index("strategy", strategy)
    if code not in STRATEGIES.values():
        raise KernelInputError(f"unknown strategy code {code}; expected one of {STRATEGIES}")
    return code


def _check_values(name: str, arr: F64, *, low: float, allow_inf: bool, strict: bool) -> None:
    bad = np.isnan(arr) | (arr <= low if strict else arr < low)
    if not allow_inf:
        bad |= np.isinf(arr)
    if bad.any():
        i = int(np.argmax(bad))
        bound = f"> {low}" if strict else f">= {low}"
        kind = "" if allow_inf else "finite and "
        raise KernelInputError(f"{name}[{i}] = {arr[i]!r}; must be {kind}{bound}")


def schedule(
    priority: npt.ArrayLike,
    task_caps: npt.ArrayLike,
    task_cost: npt.ArrayLike,
    agent_load: npt.ArrayLike,
    agent_capacity: npt.ArrayLike,
    agent_caps: npt.ArrayLike,
    agent_health: npt.ArrayLike,
    *,
    strategy: int | str,
    cursor: int = 0,
    dep_indptr: npt.ArrayLike | None = None,
    dep_indices: npt.ArrayLike | None = None,
    backend: Literal["numba", "python"] = "numba",
) -> ScheduleResult:
    """Assign a batch of tasks to the agents of one swarm.

    Parameters
    ----------
    priority
        ``int64[n]``, higher is more urgent.
    task_caps
        ``uint64[n]``, capability bits each task requires.
    task_cost
        ``float64[n]``, estimated cost in load units; finite and ``>= 0``.
    agent_load
        ``float64[m]``, current load in the same units; finite and ``>= 0``. Not modified.
    agent_capacity
        ``float64[m]``, load an agent may carry; ``> 0``, ``inf`` for unbounded.
    agent_caps
        ``uint64[m]``, capability bits each agent has.
    agent_health
        ``int8[m]``, ``HEALTHY`` (0), ``DEGRADED`` (1), ``UNHEALTHY`` (2) or ``DEAD`` (3); only
        the first two receive work.
    strategy
        A code or name from ``constants.STRATEGIES``. No default: the worker's configuration
        chooses it.
    cursor
        Round-robin position, the ``cursor`` of the previous batch's result; taken modulo ``m``.
        Default 0, the first agent.
    dep_indptr, dep_indices
        Dependencies inside the batch as CSR (see :func:`deps_to_csr`): task ``i`` waits for
        tasks ``dep_indices[dep_indptr[i]:dep_indptr[i + 1]]``. Both or neither; default none.
    backend
        ``"numba"`` (default) runs the kernel; ``"python"`` the plain-Python reference.

    Returns
    -------
    ScheduleResult

    Raises
    ------
    KernelInputError
        On a length mismatch, a lossy dtype conversion, a value out of range (negative cost or
        load, non-positive capacity, NaN, unknown health code or strategy, negative cursor), or
        malformed dependency arrays.
    """
    prio = as_array("priority", priority, np.int64)
    n = prio.shape[0]
    tcaps = as_array("task_caps", task_caps, np.uint64)
    cost = as_array("task_cost", task_cost, np.float64)
    check_length("task_caps", tcaps, n, "the length of priority")
    check_length("task_cost", cost, n, "the length of priority")
    load = as_array("agent_load", agent_load, np.float64)
    m = load.shape[0]
    cap = as_array("agent_capacity", agent_capacity, np.float64)
    acaps = as_array("agent_caps", agent_caps, np.uint64)
    health = as_array("agent_health", agent_health, np.int8)
    check_length("agent_capacity", cap, m, "the length of agent_load")
    check_length("agent_caps", acaps, m, "the length of agent_load")
    check_length("agent_health", health, m, "the length of agent_load")
    _check_values("task_cost", cost, low=0.0, allow_inf=False, strict=False)
    _check_values("agent_load", load, low=0.0, allow_inf=False, strict=False)
    _check_values("agent_capacity", cap, low=0.0, allow_inf=True, strict=True)
    if m and (health.min() < HEALTHY or health.max() > DEAD):
        raise KernelInputError(f"agent_health codes must be in [{HEALTHY}, {DEAD}]")
    indptr, indices = _dependencies(n, dep_indptr, dep_indices)
    code = _strategy_code(strategy)
    pos = as_index("cursor", cursor)
    if pos < 0:
        raise KernelInputError(f"cursor must be >= 0, got {pos}")
    pos = pos % m if m else 0

    if backend == "numba":
        result = schedule_kernel(
            prio, tcaps, cost, load, cap, acaps, health, indptr, indices, code, pos
        )
    elif backend == "python":
        from .reference import reference_schedule

        result = reference_schedule(
            prio, tcaps, cost, load, cap, acaps, health, indptr, indices, code, pos
        )
    else:
        raise KernelInputError(f"unknown backend {backend!r}; expected 'numba' or 'python'")
    assignment, reason, new_load, new_cursor, order = result
    return ScheduleResult(assignment, reason, new_load, int(new_cursor), order)


def _dependencies(
    n: int, dep_indptr: npt.ArrayLike | None, dep_indices: npt.ArrayLike | None
) -> tuple[I64, I64]:
    if dep_indptr is None and dep_indices is None:
        return np.zeros(n + 1, dtype=np.int64), np.empty(0, dtype=np.int64)
    if dep_indptr is None or dep_indices is None:
        raise KernelInputError("pass both dep_indptr and dep_indices, or neither")
    indptr = as_array("dep_indptr", dep_indptr, np.int64)
    indices = as_array("dep_indices", dep_indices, np.int64)
    check_length("dep_indptr", indptr, n + 1, "the number of tasks + 1")
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or (np.diff(indptr) < 0).any():
        raise KernelInputError(
            "dep_indptr must start at 0, never decrease, and end at len(dep_indices)"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise KernelInputError(f"dep_indices must be task indices in [0, {n})")
    return indptr, indices
