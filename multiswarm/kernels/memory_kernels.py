"""Numba kernels deciding the region pool's allocations, frees, transfers and evictions.

Each kernel works in place on the pool's two tables (row layout in
:mod:`multiswarm.kernels.constants`, ``ROW_*``): ``meta`` is ``int64[N_INT_ROWS, n_regions]``
and ``times`` is ``float64[N_FLOAT_ROWS, n_regions]``. Kernels return ``STATUS_*`` codes instead
of raising; :class:`multiswarm.kernels.memory.RegionPool` turns them into errors.
:mod:`multiswarm.kernels.reference_memory` defines the same functions in plain Python.

An allocation is named by ``(alloc_id, start)``: its id and its first region. A pair that does
not match the table gives ``STATUS_UNKNOWN_ALLOCATION``, so a stale handle never frees or
hands over somebody else's regions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._jit import njit
from .constants import (
    EVICT_FIFO,
    EVICT_LFU,
    EVICT_LRU,
    EVICT_NONE,
    EVICT_TTL,
    ROW_ALLOC,
    ROW_COUNT,
    ROW_DEADLINE,
    ROW_INSERTED,
    ROW_LAST_ACCESS,
    ROW_NBYTES,
    ROW_NREGIONS,
    ROW_OWNER,
    ROW_PINNED,
    ROW_START,
    STATUS_NOT_OWNER,
    STATUS_OK,
    STATUS_OUT_OF_MEMORY,
    STATUS_OVER_LIMIT,
    STATUS_UNKNOWN_ALLOCATION,
)

__all__ = [
    "allocate",
    "eviction_order",
    "expire",
    "find_run",
    "free",
    "gc",
    "touch",
    "transfer",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@njit
def find_run(meta: I64, n_regions: int) -> int:
    """First region of the lowest run of ``n_regions`` free regions, or -1 (first fit)."""
    owner = meta[ROW_OWNER]
    run = 0
    for r in range(owner.shape[0]):
        if owner[r] < 0:
            run += 1
            if run == n_regions:
                return r - n_regions + 1
        else:
            run = 0
    return -1


@njit
def _is_live(meta: I64, alloc_id: int, start: int) -> bool:
    return bool(
        0 <= start < meta.shape[1]
        and meta[ROW_ALLOC, start] == alloc_id
        and meta[ROW_START, start] == start
        and alloc_id >= 0
    )


@njit
def _clear(meta: I64, times: F64, start: int) -> None:
    """Return an allocation's regions to the free state, every field to its free value."""
    n = meta[ROW_NREGIONS, start]
    for r in range(start, start + n):
        meta[ROW_OWNER, r] = -1
        meta[ROW_ALLOC, r] = -1
        meta[ROW_START, r] = -1
    for row in (ROW_NREGIONS, ROW_NBYTES, ROW_COUNT, ROW_PINNED):
        meta[row, start] = 0
    for row in (ROW_LAST_ACCESS, ROW_INSERTED, ROW_DEADLINE):
        times[row, start] = 0.0


@njit
def _regions_of(meta: I64, agent: int) -> int:
    owner = meta[ROW_OWNER]
    count = 0
    for r in range(owner.shape[0]):
        if owner[r] == agent:
            count += 1
    return count


@njit
def eviction_order(meta: I64, times: F64, policy: int) -> I64:
    """First regions of the evictable (unpinned) allocations, first victim first.

    Orders, all ending with the allocation id (oldest first) so there are no ties: LRU by last
    access; LFU by access count, then last access; FIFO by insertion; TTL by deadline (no TTL is
    ``inf``, so last), then insertion. ``EVICT_NONE`` gives an empty array.
    """
    n = meta.shape[1]
    starts = np.empty(n, dtype=np.int64)
    k = 0
    for r in range(n):
        if meta[ROW_START, r] == r and meta[ROW_PINNED, r] == 0:
            starts[k] = r
            k += 1
    if policy == EVICT_NONE:
        k = 0
    starts = starts[:k]
    # Stable sorts from the last key to the first give the lexicographic order.
    starts = starts[np.argsort(meta[ROW_ALLOC][starts], kind="mergesort")]
    if policy == EVICT_LFU:
        secondary = times[ROW_LAST_ACCESS][starts]
        starts = starts[np.argsort(secondary, kind="mergesort")]
        primary = meta[ROW_COUNT][starts].astype(np.float64)
    elif policy == EVICT_TTL:
        secondary = times[ROW_INSERTED][starts]
        starts = starts[np.argsort(secondary, kind="mergesort")]
        primary = times[ROW_DEADLINE][starts]
    elif policy == EVICT_FIFO:
        primary = times[ROW_INSERTED][starts]
    elif policy == EVICT_LRU:
        primary = times[ROW_LAST_ACCESS][starts]
    else:
        primary = np.zeros(k, dtype=np.float64)
    return starts[np.argsort(primary, kind="mergesort")]


@njit
def _evict_for(meta: I64, times: F64, n_regions: int, policy: int, evicted: I64) -> tuple[int, int]:
    """Evict, in policy order, the fewest allocations that open a run of ``n_regions``.

    Victims are freed on paper one by one in policy order until a run is long enough; only the
    allocations overlapping the lowest such window are then really evicted, in policy order,
    their ids written to ``evicted``. Returns ``(window start, number evicted)``, or
    ``(-1, 0)`` with nothing evicted if even evicting everything would not do.
    """
    order = eviction_order(meta, times, policy)
    n = meta.shape[1]
    vacant = meta[ROW_OWNER] < 0
    for i in range(order.shape[0]):
        s = order[i]
        end = s + meta[ROW_NREGIONS, s]
        vacant[s:end] = True
        # Before this victim no run was long enough, so only the run around it can be now.
        lo = s
        while lo > 0 and vacant[lo - 1]:
            lo -= 1
        hi = end
        while hi < n and vacant[hi]:
            hi += 1
        if hi - lo >= n_regions:
            n_evicted = 0
            for j in range(i + 1):
                v = order[j]
                if v < lo + n_regions and v + meta[ROW_NREGIONS, v] > lo:
                    evicted[n_evicted] = meta[ROW_ALLOC, v]
                    n_evicted += 1
                    _clear(meta, times, v)
            return lo, n_evicted
    return -1, 0


@njit
def allocate(
    meta: I64,
    times: F64,
    agent: int,
    n_regions: int,
    nbytes: int,
    alloc_id: int,
    now: float,
    deadline: float,
    pinned: bool,
    limit_regions: int,
    policy: int,
    evicted: I64,
) -> tuple[int, int, int]:
    """Place a new allocation of ``n_regions`` contiguous regions for ``agent``.

    Parameters
    ----------
    meta, times
        The pool's tables, updated in place.
    agent
        Owner, ``>= 0``.
    n_regions
        Regions needed, ``>= 1``.
    nbytes
        Bytes requested, recorded for usage reports.
    alloc_id
        New, unique, ``>= 0`` id.
    now
        Clock time in seconds: insertion and last-access time.
    deadline
        Clock time after which the allocation may be expired; ``inf`` for never.
    pinned
        Never evicted nor expired.
    limit_regions
        Most regions ``agent`` may hold, ``-1`` for no limit.
    policy
        ``EVICT_*`` code used when no free run fits.
    evicted
        ``int64[n_regions_in_pool]`` scratch: ids of the evicted allocations are written here.

    Returns
    -------
    status
        ``STATUS_OK``, ``STATUS_OVER_LIMIT`` or ``STATUS_OUT_OF_MEMORY``; nothing changes unless OK.
    start
        First region, -1 unless OK.
    n_evicted
        Entries of ``evicted`` written.
    """
    if limit_regions >= 0 and _regions_of(meta, agent) + n_regions > limit_regions:
        return STATUS_OVER_LIMIT, -1, 0
    if n_regions > meta.shape[1]:
        return STATUS_OUT_OF_MEMORY, -1, 0
    start = find_run(meta, n_regions)
    n_evicted = 0
    if start < 0:
        start, n_evicted = _evict_for(meta, times, n_regions, policy, evicted)
        if start < 0:
            return STATUS_OUT_OF_MEMORY, -1, 0
    for r in range(start, start + n_regions):
        meta[ROW_OWNER, r] = agent
        meta[ROW_ALLOC, r] = alloc_id
        meta[ROW_START, r] = start
    meta[ROW_NREGIONS, start] = n_regions
    meta[ROW_NBYTES, start] = nbytes
    meta[ROW_COUNT, start] = 1
    meta[ROW_PINNED, start] = 1 if pinned else 0
    times[ROW_LAST_ACCESS, start] = now
    times[ROW_INSERTED, start] = now
    times[ROW_DEADLINE, start] = deadline
    return STATUS_OK, start, n_evicted


@njit
def free(meta: I64, times: F64, alloc_id: int, start: int) -> int:
    """Free an allocation; ``STATUS_OK`` or ``STATUS_UNKNOWN_ALLOCATION``."""
    if not _is_live(meta, alloc_id, start):
        return STATUS_UNKNOWN_ALLOCATION
    _clear(meta, times, start)
    return STATUS_OK


@njit
def touch(meta: I64, times: F64, alloc_id: int, start: int, now: float) -> int:
    """Record an access at clock time ``now``; ``STATUS_OK`` or ``STATUS_UNKNOWN_ALLOCATION``."""
    if not _is_live(meta, alloc_id, start):
        return STATUS_UNKNOWN_ALLOCATION
    meta[ROW_COUNT, start] += 1
    times[ROW_LAST_ACCESS, start] = now
    return STATUS_OK


@njit
def transfer(
    meta: I64, alloc_id: int, start: int, from_agent: int, to_agent: int, limit_regions: int
) -> int:
    """Give an allocation from ``from_agent`` to ``to_agent``: owners change, bytes stay.

    ``limit_regions`` is ``to_agent``'s limit (``-1`` for none). Returns ``STATUS_OK``,
    ``STATUS_UNKNOWN_ALLOCATION``, ``STATUS_NOT_OWNER`` or ``STATUS_OVER_LIMIT``.
    """
    if not _is_live(meta, alloc_id, start):
        return STATUS_UNKNOWN_ALLOCATION
    if meta[ROW_OWNER, start] != from_agent:
        return STATUS_NOT_OWNER
    if from_agent == to_agent:
        return STATUS_OK
    n = meta[ROW_NREGIONS, start]
    if limit_regions >= 0 and _regions_of(meta, to_agent) + n > limit_regions:
        return STATUS_OVER_LIMIT
    for r in range(start, start + n):
        meta[ROW_OWNER, r] = to_agent
    return STATUS_OK


@njit
def gc(meta: I64, times: F64, dead_agents: I64, freed: I64) -> int:
    """Free every allocation owned by an agent of ``dead_agents`` (sorted ascending).

    Pinned allocations are freed too: their owner is gone. Ids go to ``freed`` in region order;
    returns how many.
    """
    count = 0
    for r in range(meta.shape[1]):
        if meta[ROW_START, r] != r:
            continue
        owner = meta[ROW_OWNER, r]
        i = np.searchsorted(dead_agents, owner)
        if i < dead_agents.shape[0] and dead_agents[i] == owner:
            freed[count] = meta[ROW_ALLOC, r]
            count += 1
            _clear(meta, times, r)
    return count


@njit
def expire(meta: I64, times: F64, now: float, freed: I64) -> int:
    """Free every unpinned allocation whose deadline is ``<= now``; ids to ``freed``, count back."""
    count = 0
    for r in range(meta.shape[1]):
        if meta[ROW_START, r] == r and meta[ROW_PINNED, r] == 0 and times[ROW_DEADLINE, r] <= now:
            freed[count] = meta[ROW_ALLOC, r]
            count += 1
            _clear(meta, times, r)
    return count
