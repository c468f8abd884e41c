"""The scheduling kernel's rankings of the eligible agents (decisions 56, 76 and 77).

Two structures, both ordering agents by ``(fit, key, index)`` exactly as the reference's
``min`` does (``key`` is the load or the load ratio; ``fit`` the number of capability bits
under CAPABILITY, else 0):

* a sorted array of agent indexes (``rank``): a search scans it from the front, and the chosen
  agent moves back to its new place by bisection and one ``memmove``; under CAPABILITY its
  entries carry the top bits of each agent's key beside its index (``entries``: the bisection
  reads one array, decision 86);
* for LEAST_LOADED and LOAD_BALANCED once the moves grow long (the loads have converged, a
  placed agent then passes most of the others), a short sorted *head* of the best agents and
  a tournament tree over the rest (``tk``/``ti``: each node's least key and its agent; leaf
  ``size + a`` is agent ``a``, or empty): a placement replays two leaf-to-root paths, with no
  shift and no branch on the keys.

Numba keys the cache of ``schedule_kernel`` by its own file, not by this one: at import,
``_jit.drop_stale_cache`` drops the cached kernels when any file of the package changed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._jit import njit, shift_left
from .constants import CAPABILITY, DEGRADED, LEAST_LOADED

__all__ = [
    "EMPTY",
    "HEAD",
    "demote",
    "demote_entry",
    "entries",
    "insert_head",
    "pick_entry",
    "pick_ranked",
    "popcount",
    "rank_agents",
    "rotate",
    "set_leaf",
    "to_tree",
    "tree_pick",
    "untree",
]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
U32 = npt.NDArray[np.uint32]

#: Most capability bits an agent can hold (the ``fit`` groups of the ranked agents).
MAX_FIT = 64
#: Agents kept in the head: a search rarely passes more (measured 2.4 on bench_kernels' batch).
HEAD = 8
#: An empty leaf's key: above the bits of every key, ``inf`` included (keys are ``>= 0``).
EMPTY = (1 << 63) - 2


@njit
def popcount(x: np.uint64) -> int:
    count = 0
    while x != 0:
        x &= x - np.uint64(1)
        count += 1
    return count


@njit
def rank_agents(
    load: F64, capacity: F64, caps: U64, health: I8, strategy: int
) -> tuple[U32, I64, I64, F64]:
    """Healthy and degraded agents sorted by the strategy's preference, best first.

    The key is ``(fit, key, index)``: ``key`` is the load (LEAST_LOADED) or the load ratio,
    plus 0.0 (a -0.0 becomes 0.0, equal to it, so the keys' bits as ``int64`` order as the keys
    for the tree); ``fit`` is 0 except for CAPABILITY, where it is the agent's number of
    capability bits. For an agent holding every bit a task needs, its bits beyond the task's
    number ``fit`` minus the task's own count, so ranking by ``fit`` ranks by extra bits for
    every task at once. Returns ``(rank, group, fit, key)``: ``rank`` holds agent indexes as
    ``uint32`` (half the bytes to shift after a placement; unsigned, so no negative-index
    wraparound on the gathers); the agents of fit ``f`` hold ``rank[group[f]:group[f + 1]]``,
    and as placements only raise keys an agent never leaves its group; ``fit`` and ``key`` are
    indexed by agent.
    """
    m = load.shape[0]
    fit = np.zeros(m, dtype=np.int64)
    key = np.empty(m, dtype=np.float64)
    live = np.empty(m, dtype=np.int64)
    n_live = 0
    for a in range(m):
        key[a] = (load[a] if strategy == LEAST_LOADED else load[a] / capacity[a]) + 0.0
        if strategy == CAPABILITY:
            fit[a] = popcount(caps[a])
        if health[a] <= DEGRADED:
            live[n_live] = a
            n_live += 1
    rank = live[:n_live]
    # Stable sorts, last key first: the index order of ``live`` breaks the remaining ties.
    rank = rank[np.argsort(key[rank], kind="mergesort")]
    rank = rank[np.argsort(fit[rank], kind="mergesort")]
    group = np.zeros(MAX_FIT + 2, dtype=np.int64)
    for p in range(n_live):
        group[fit[rank[p]] + 1] += 1
    for f in range(MAX_FIT + 1):
        group[f + 1] += group[f]
    return rank.astype(np.uint32), group, fit, key


@njit
def pick_ranked(
    need: np.uint64,
    cost: float,
    load: F64,
    capacity: F64,
    caps: U64,
    rank: U32,
    n_live: int,
) -> int:
    """Position in ``rank[:n_live]`` of the first agent that has the capabilities and room;
    -1 if none."""
    for p in range(n_live):
        a = rank[np.uint64(p)]  # unsigned: no negative-index wraparound (decision 97)
        if (caps[a] & need) == need and load[a] + cost <= capacity[a]:
            return p
    return -1


@njit
def demote(rank: U32, p: int, end: int, key: F64) -> None:
    """Move ``rank[p]`` right to its place in ``rank[p:end]`` after its key grew (keys never
    shrink: costs >= 0). (Its place is not returned: using it after the memmove made every
    strategy's loop slower.)

    Under least-loaded the agents' loads converge, and a placed agent then moves past most of
    the others: find the place by bisection and shift with a memmove, not by swaps. (Measured
    slower instead: a binary heap visited in order by a frontier heap, a gap buffer shifting
    the shorter side, and galloping from the last place; the tree below wins only once the
    moves are long, decision 77.)
    """
    a = rank[np.uint64(p)]
    ka = key[a]
    lo, hi = p + 1, end  # the place is the first q in [lo, hi) with a before rank[q]
    while lo < hi:
        mid = (lo + hi) // 2
        # whether a ranks before b (same fit), by (key, index), written out here (a call per
        # step costs more than the step); unsigned indexes skip Numba's negative-index wraparound
        b = rank[np.uint64(mid)]
        kb = key[b]
        if ka < kb or (ka == kb and a < b):
            hi = mid
        else:
            lo = mid + 1
    rotate(rank, p, lo)


#: An entry's agent index: its low 32 bits (``rank`` is ``uint32``); the high 32 hold the top
#: bits of the agent's key bits (``>= 0``: the sign bit is clear), which order as the key.
_LOW = 0xFFFFFFFF
_TOP = 31


@njit
def entries(rank: U32, kb: I64) -> U64:
    """The CAPABILITY ranking as entries: ``(kb[a] >> 31) << 32 | a`` for each ``a`` of
    ``rank``, so that a bisection compares the keys' top bits without loading the keys."""
    ent = np.empty(rank.shape[0], dtype=np.uint64)
    for p in range(rank.shape[0]):
        a = rank[p]
        ent[p] = (np.uint64(kb[a] >> _TOP) << np.uint64(32)) | np.uint64(a)
    return ent


@njit
def pick_entry(
    need: np.uint64,
    cost: float,
    load: F64,
    capacity: F64,
    caps: U64,
    ent: U64,
    start: int,
    n_live: int,
) -> int:
    """Position in ``ent[:n_live]``, from ``start``, of the first agent that has the
    capabilities and room; -1 if none. (The agents' bits are loaded, not kept in rank order:
    shifting a second array after each placement cost more than these loads, decision 86.)"""
    low = np.uint64(_LOW)
    for p in range(start, n_live):
        a = ent[np.uint64(p)] & low  # unsigned: no negative-index wraparound (decision 97)
        if (caps[a] & need) == need and load[a] + cost <= capacity[a]:
            return p
    return -1


@njit
def demote_entry(ent: U64, p: int, end: int, a: np.uint64, key: F64, kb: I64) -> None:
    """Move agent ``a``, ``ent[p]``, right to its place in ``ent[p:end]`` (the end of its fit
    group) after its key grew, with its entry rewritten from the new key. Entries whose top
    bits differ from ``a``'s order by them alone; equal top bits (ties, or keys within ~1e-6
    of each other) compare the keys, then the indexes, as :func:`demote` does."""
    low = np.uint64(_LOW)
    ka = key[a]
    top = np.uint64(kb[a] >> _TOP)
    lo, hi = p + 1, end  # the place is the first q in [lo, hi) with a before ent[q]
    while lo < hi:
        mid = (lo + hi) // 2
        e = ent[np.uint64(mid)]
        e_top = e >> np.uint64(32)
        if e_top == top:  # rare but for ties: the keys decide
            b = e & low
            kb_ = key[b]
            before = ka < kb_ or (ka == kb_ and a < b)
        else:
            before = top < e_top
        if before:
            hi = mid
        else:
            lo = mid + 1
    shift_left(ent, p, lo)
    ent[np.uint64(lo - 1)] = (top << np.uint64(32)) | a


@njit
def rotate(values: npt.NDArray[np.generic], p: int, q: int) -> None:
    """Move ``values[p]`` to ``q - 1``, shifting ``values[p + 1:q]`` left by one."""
    first = values[p]
    shift_left(values, p, q)  # one memmove (decision 76), not a loop Numba vectorizes
    values[q - 1] = first


@njit
def to_tree(rank: U32, kb: I64, head: I64, tk: I64, ti: I64) -> int:
    """Turn the ranking ``rank`` (one fit group) into a head and a tree: the first ``HEAD``
    agents go to ``head`` (room for all of them), the others to the tree ``tk``/``ti`` (``2 *
    size`` nodes, ``size`` a power of two at least the number of agents); returns the head's
    length. ``kb`` is the keys' bits (``key.view(np.int64)``), indexed by agent."""
    size = tk.shape[0] >> 1
    tk[:] = EMPTY
    ti[:] = -1
    h = min(HEAD, int(rank.shape[0]))
    for j in range(rank.shape[0]):
        a = rank[j]
        if j < h:
            head[j] = a
        else:
            tk[size + a] = kb[a]
            ti[size + a] = a
    for node in range(size - 1, 0, -1):
        c = 2 * node + (tk[2 * node + 1] < tk[2 * node])  # the left child wins a tie
        tk[node] = tk[c]
        ti[node] = ti[c]
    return h


@njit
def set_leaf(tk: I64, ti: I64, size: int, a: int, k: int) -> None:
    """Give agent ``a`` the key bits ``k`` (``EMPTY``: take it out) and replay its path."""
    one = np.uint64(1)
    node = np.uint64(size + a)
    tk[node] = k
    ti[node] = a if k != EMPTY else -1
    while node > one:
        ks = tk[node ^ one]
        # Agent indexes grow left to right, so the left sibling wins a tie: a right child
        # loses to a sibling key <= its own. No branch on the keys (they are unpredictable):
        # the winner's side is a bit, its agent loaded from that side.
        c = node ^ np.uint64(ks < k + np.int64(node & one))
        k = min(k, ks)
        node >>= one
        tk[node] = k
        ti[node] = ti[c]


@njit
def tree_pick(
    need: np.uint64,
    cost: float,
    load: F64,
    capacity: F64,
    caps: U64,
    head: I64,
    h: int,
    tk: I64,
    ti: I64,
    size: int,
) -> tuple[int, int]:
    """``(p, h)``: the position in ``head[:h]`` of the first agent that has the capabilities and
    room, -1 if none; agents are moved from the tree to the head's end (in order) until one
    fits or the tree is empty, and ``h`` counts them."""
    for p in range(h):
        b = np.uint64(head[np.uint64(p)])  # unsigned: no negative-index wraparound
        if (caps[b] & need) == need and load[b] + cost <= capacity[b]:
            return p, h
    while tk[1] != EMPTY:
        a = ti[1]
        set_leaf(tk, ti, size, a, EMPTY)
        head[h] = a
        h += 1
        if (caps[a] & need) == need and load[a] + cost <= capacity[a]:
            return h - 1, h
    return -1, h


@njit
def insert_head(head: I64, p: int, h: int, a: int, kb: I64) -> None:
    """Insert agent ``a`` into the sorted ``head[p:h]`` (room at ``head[h]``): a placed agent
    still preceding the tree's best (rare once the keys have converged: a call, not inlined)."""
    ka = kb[a]
    i = h  # the agents of head[p:h] that a precedes move right by one
    while i > p and (ka < kb[head[i - 1]] or (ka == kb[head[i - 1]] and a < head[i - 1])):
        head[i] = head[i - 1]
        i -= 1
    head[i] = a


@njit
def untree(rank: U32, head: I64, h: int, tk: I64, ti: I64, size: int) -> int:
    """Write the head and then the tree's agents, in order, to ``rank`` (the tree is emptied);
    returns their number: the sorted ranking again."""
    while tk[1] != EMPTY:
        a = ti[1]
        set_leaf(tk, ti, size, a, EMPTY)
        head[h] = a
        h += 1
    for i in range(h):
        rank[i] = head[i]
    return h
