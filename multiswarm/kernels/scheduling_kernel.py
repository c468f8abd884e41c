"""The Numba kernel behind :func:`multiswarm.kernels.scheduling.schedule`.

The rules it implements are documented in :mod:`multiswarm.kernels.scheduling`; the plain
Python definition of its results is :func:`multiswarm.kernels.reference.reference_schedule`.
How it is fast: tasks are ordered once by a counting sort, and the ready ones are bits at their
positions in that order, taken lowest first (decision 72); for the non-round-robin
strategies the eligible agents are kept ranked by preference (``uint32``, grouped by number of
capability bits; under CAPABILITY ``uint64`` entries with the keys' top bits, decision 86), so
the search for an agent usually stops after a few, the chosen agent is moved to its new rank
by bisection, and an agent the batch's cheapest task no longer fits leaves the ranking; under least-loaded and load-balanced, once placed agents move far, a short
head plus a tournament tree replaces the ranking (``_ranking.py``). Decisions 56 and 77 in
docs/decisions.md have the measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt
from numba.cpython.unsafe.numbers import trailing_zeros as _trailing_zeros

from ._jit import njit
from ._ranking import (
    EMPTY,
    F64,
    HEAD,
    I8,
    I64,
    U64,
    demote,
    demote_entry,
    entries,
    insert_head,
    pick_entry,
    pick_ranked,
    popcount,
    rank_agents,
    rotate,
    set_leaf,
    to_tree,
    tree_pick,
    untree,
)
from .constants import (
    ALL_CAPABLE_AGENTS_FULL,
    ASSIGNED,
    CAPABILITY,
    DEGRADED,
    DEPENDENCY_CYCLE,
    DEPENDENCY_UNASSIGNED,
    LEAST_LOADED,
    LOAD_BALANCED,
    NO_CAPABLE_AGENT,
    NO_HEALTHY_CAPABLE_AGENT,
    ROUND_ROBIN,
)

__all__ = ["schedule_kernel"]

#: Task positions and counts: ``int32`` halves the bookkeeping arrays a batch reads
#: scattered (decision 72); a batch has fewer than 2**31 tasks and dependencies.
I32 = npt.NDArray[np.int32]

#: Under LEAST_LOADED and LOAD_BALANCED, the ranking turns into a head and a tree once most
#: placed agents move past more than this many others (decision 77).
_FAR = 128

#: Numba's count of trailing zero bits (one instruction), typed for mypy.
trailing_zeros = cast(Callable[[np.uint64], np.uint64], _trailing_zeros)


@njit
def _task_keys(priority: I64, positions: bool) -> tuple[I32, I32]:
    """The tasks in the order they are taken when ready (higher priority, then lower index),
    and each task's position in it: the ready set then holds plain integers.

    Returns ``(by_key, tkey)``, ``int32[n]`` each, ``by_key[tkey[t]] == t`` (``tkey`` is empty
    unless ``positions``: only tasks freed by a dependency need theirs). A counting sort
    when the priorities span at most a few times the number of tasks (the usual case: a handful
    of levels), else a stable sort on ``~priority`` (decreasing, no overflow).
    """
    n = priority.shape[0]
    tkey = np.empty(n if positions else 0, dtype=np.int32)
    if n == 0:
        return tkey.copy(), tkey
    hi = priority.max()
    # Unsigned subtraction: the true span even for priorities at both ends of int64.
    span = np.uint64(hi) - np.uint64(priority.min())
    if span > np.uint64(4 * n):
        by_key = np.argsort(~priority, kind="mergesort").astype(np.int32)
    else:
        # (unsigned indexes: no negative-index wraparound, decision 97)
        slot = np.zeros(int(span) + 2, dtype=np.int64)
        for t in range(n):
            slot[np.uint64(hi - priority[np.uint64(t)] + 1)] += 1
        for b in range(1, slot.shape[0]):
            slot[np.uint64(b)] += slot[np.uint64(b - 1)]
        by_key = np.empty(n, dtype=np.int32)
        for t in range(n):
            level = np.uint64(hi - priority[np.uint64(t)])
            by_key[np.uint64(slot[level])] = t
            slot[level] += 1
    for i in range(tkey.shape[0]):
        tkey[np.uint64(by_key[np.uint64(i)])] = i
    return by_key, tkey


@njit
def _mark_ready(words: U64, summary: U64, k: int) -> None:
    """Set bit ``k`` of the ready set, and the summary bit of its word."""
    w = np.uint64(k >> 6)  # unsigned indexes: no negative-index wraparound (decision 97)
    words[w] |= np.uint64(1) << np.uint64(k & 63)
    summary[w >> np.uint64(6)] |= np.uint64(1) << (w & np.uint64(63))


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
        # an unsigned index: no negative-index wraparound on each of the four loads
        u = np.uint64(a)
        if health[u] <= DEGRADED and (caps[u] & need) == need and load[u] + cost <= capacity[u]:
            return a
    return -1


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
def _reverse_csr(n: int, indptr: I64, indices: I64) -> tuple[I32, I32]:
    """Dependents of each task, as CSR, from the dependencies' CSR."""
    # (unsigned indexes: no negative-index wraparound, decision 97)
    rev_indptr = np.zeros(n + 1, dtype=np.int32)
    for e in range(indices.shape[0]):
        rev_indptr[np.uint64(indices[np.uint64(e)] + 1)] += 1
    for t in range(n):
        rev_indptr[np.uint64(t + 1)] += rev_indptr[np.uint64(t)]
    fill = rev_indptr[:n].copy()
    rev_indices = np.empty(indices.shape[0], dtype=np.int32)
    for t in range(n):
        for e in range(indptr[np.uint64(t)], indptr[np.uint64(t + 1)]):
            d = np.uint64(indices[np.uint64(e)])
            rev_indices[np.uint64(fill[d])] = t
            fill[d] += 1
    return rev_indptr, rev_indices


@njit
def _explain_undecided(
    decided: npt.NDArray[np.bool_],
    indptr: I64,
    indices: I64,
    rev_indptr: I32,
    rev_indices: I32,
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
    """Place a batch of tasks: the unchecked core of :func:`.scheduling.schedule`.

    Same parameters, positional. Inputs must already be valid (as ``schedule`` ensures):
    out-of-range indices are not checked. Returns the fields of
    :class:`~multiswarm.kernels.scheduling.ScheduleResult` as a tuple; the inputs are not
    modified.
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
    rank, group, fit, key = rank_agents(
        agent_load, agent_capacity, agent_caps, agent_health, strategy
    )
    n_live = rank.shape[0]
    # The head and tree replacing the ranking once its moves are long (decision 77): the
    # keys' bits order as the keys (all >= 0), so the tree compares integers.
    kb = key.view(np.int64)
    # CAPABILITY ranks entries: each agent's index and its key's top bits (decision 86)
    ent = entries(rank if strategy == CAPABILITY else rank[:0], kb)
    ranks_keys = strategy in (LEAST_LOADED, LOAD_BALANCED)
    size = 1 if ranks_keys else 0
    while size < m and ranks_keys:
        size <<= 1
    tree = np.empty((n_live if ranks_keys else 0) + 4 * size, dtype=np.int64)  # one allocation
    tk, ti, head = tree[: 2 * size], tree[2 * size : 4 * size], tree[4 * size :]
    h = 0
    use_tree = False
    drift = debt = 0
    least_cost = task_cost.min() if n else 0.0

    # without dependencies (the worker's batches) every task is ready at once, in key order
    has_deps = dep_indices.shape[0] > 0
    rev_indptr, rev_indices = _reverse_csr(n if has_deps else 0, dep_indptr, dep_indices)
    blocked = np.zeros(n, dtype=np.bool_)
    n_decided = 0
    # The ready tasks are bits at their positions in the priority order, so the next task is
    # the lowest bit set; a summary bit per word skips the empty ones. (Measured ~5 % faster
    # than a sorted queue plus a binary heap of the tasks freed by a dependency: decision 72.)
    by_key, tkey = _task_keys(priority, has_deps)
    words = np.zeros((n + 63) >> 6, dtype=np.uint64)
    summary = np.zeros((words.shape[0] + 63) >> 6, dtype=np.uint64)
    waiting = (dep_indptr[1:] - dep_indptr[:-1]).astype(np.int32)
    for k in range(n):
        if not has_deps or waiting[np.uint64(by_key[np.uint64(k)])] == 0:
            _mark_ready(words, summary, k)
    n_summary = summary.shape[0]
    s = 0  # no summary word before it has a bit set
    while True:
        while s < n_summary and summary[np.uint64(s)] == 0:
            s += 1
        if s == n_summary:
            break
        # unsigned indexes below: no negative-index wraparound on each access (decision 97)
        w = (s << 6) + int(trailing_zeros(summary[np.uint64(s)]))
        bits = words[np.uint64(w)]
        t = by_key[np.uint64((w << 6) + int(trailing_zeros(bits)))]
        tu = np.uint64(t)
        bits &= bits - np.uint64(1)
        words[np.uint64(w)] = bits
        if bits == 0:
            summary[np.uint64(s)] &= ~(np.uint64(1) << np.uint64(w & 63))
        n_decided += 1
        need = task_caps[tu]
        cost = task_cost[tu]
        if has_deps and blocked[tu]:
            reason[tu] = DEPENDENCY_UNASSIGNED
        else:
            if strategy == ROUND_ROBIN:
                a = _pick_round_robin(
                    need, cost, load, agent_capacity, agent_caps, agent_health, cursor
                )
                if a >= 0:
                    cursor = a + 1 if a + 1 < m else 0
            elif use_tree:
                pulled = h
                p, h = tree_pick(
                    need, cost, load, agent_capacity, agent_caps, head, h, tk, ti, size
                )
                debt = max(debt + 4 * (h - pulled) - 1, 0)
                a = int(head[p]) if p >= 0 else -1
                if debt > 4 * n_live or tk[1] == EMPTY:
                    # searches pass many agents (tasks few or none can take; ``debt`` counts
                    # the agents they moved out of the tree, less a quarter a search): the
                    # tree would be emptied and refilled again and again, so the sorted
                    # ranking, the head then the tree's agents in order, serves the rest
                    n_live = h = untree(rank, head, h, tk, ti, size)
                    group[1:] = h
                    use_tree = ranks_keys = False
            elif strategy == CAPABILITY:
                # agents with fewer bits than the task needs cannot hold them
                start = group[np.uint64(popcount(need))]
                p = pick_entry(need, cost, load, agent_capacity, agent_caps, ent, start, n_live)
                a = int(np.uint32(ent[np.uint64(p)])) if p >= 0 else -1  # its low 32 bits
            else:
                p = pick_ranked(need, cost, load, agent_capacity, agent_caps, rank, n_live)
                a = int(rank[p]) if p >= 0 else -1
            if a >= 0:
                au = np.uint64(a)
                assignment[tu] = a
                reason[tu] = ASSIGNED
                load[au] += cost
                order[np.uint64(n_placed)] = t
                n_placed += 1
                if strategy != ROUND_ROBIN:
                    ratio = load[au] if strategy == LEAST_LOADED else load[au] / agent_capacity[au]
                    key[au] = ratio + 0.0
                    # no task of the batch fits any more (rounding is monotonic): drop it
                    # rather than check it again for every later task
                    drop = load[au] + least_cost > agent_capacity[au]
                    if use_tree:
                        # a leaves the head; it returns to it if it still precedes the tree's
                        # best agent r, else it goes into the tree and r takes the head's end
                        h -= 1
                        for i in range(p, h):
                            head[i] = head[i + 1]
                        ka, r, kr = kb[a], ti[1], tk[1]
                        if drop:
                            if h < HEAD and kr != EMPTY:
                                set_leaf(tk, ti, size, r, EMPTY)
                                head[h] = r
                                h += 1
                        elif (kr < ka) | ((kr == ka) & (r < a)):
                            set_leaf(tk, ti, size, a, ka)
                            set_leaf(tk, ti, size, r, EMPTY)
                            head[h] = r
                            h += 1
                        else:
                            insert_head(head, p, h, a, kb)
                            h += 1
                        if h > HEAD:  # it grows when a search passes all of it: one back a time
                            h -= 1
                            set_leaf(tk, ti, size, head[h], kb[head[h]])
                    elif drop:
                        if strategy == CAPABILITY:
                            rotate(ent, p, n_live)
                        else:
                            rotate(rank, p, n_live)
                        group[fit[au] + 1 :] -= 1
                        n_live -= 1
                    else:
                        if ranks_keys:  # drift: 256 times a decaying share of far moves
                            far = p + _FAR < n_live and key[rank[np.uint64(p + _FAR)]] <= key[au]
                            drift += 16 * far - (drift >> 4)
                        if strategy == CAPABILITY:
                            demote_entry(ent, p, group[np.uint64(fit[au] + 1)], au, key, kb)
                        else:
                            demote(rank, p, n_live, key)
                        if ranks_keys and drift > 128 and n_live > HEAD:
                            h = to_tree(rank[:n_live], kb, head, tk, ti)
                            use_tree = True
            else:
                reason[tu] = _failure_reason(need, agent_caps, agent_health)
        if not has_deps:
            continue
        unplaced = assignment[tu] < 0
        for e in range(rev_indptr[tu], rev_indptr[np.uint64(t + 1)]):
            u = np.uint64(rev_indices[np.uint64(e)])
            if unplaced:
                blocked[u] = True
            waiting[u] -= 1
            if waiting[u] == 0:
                k = tkey[u]
                _mark_ready(words, summary, k)
                s = min(s, k >> 12)

    if n_decided < n:
        # a decided task's reason is never DEPENDENCY_CYCLE: the undecided are the rest
        decided = reason != DEPENDENCY_CYCLE
        _explain_undecided(decided, dep_indptr, dep_indices, rev_indptr, rev_indices, reason)
    placed = order if n_placed == n else order[:n_placed].copy()
    return assignment, reason, load, cursor, placed
