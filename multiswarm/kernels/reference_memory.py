"""Plain-Python definition of the region pool kernels in :mod:`.memory_kernels`.

Same functions, same signatures, same effect on the tables, written the obvious way: victims
sorted with key tuples, and after each victim freed on paper a full first-fit scan. No Numba
here; ``RegionPool(backend="python")`` runs on these.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from multiswarm.kernels.errors import KernelInputError

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


def _first_fit(is_free: list[bool], n_regions: int) -> int:
    run = 0
    for r, vacant in enumerate(is_free):
        run = run + 1 if vacant else 0
        if run == n_regions:
            return r - n_regions + 1
    return -1


def find_run(meta: I64, n_regions: int) -> int:
    """See :func:`.memory_kernels.find_run`."""
    return _first_fit([o == -1 for o in meta[ROW_OWNER].tolist()], n_regions)


def _starts(meta: I64) -> list[int]:
    return [r for r in range(meta.shape[1]) if meta[ROW_START, r] == r]


def _is_live(meta: I64, alloc_id: int, start: int) -> bool:
    return alloc_id >= 0 and start in _starts(meta) and int(meta[ROW_ALLOC, start]) == alloc_id


def _clear(meta: I64, times: F64, start: int) -> None:
    n = int(meta[ROW_NREGIONS, start])
    meta[:, start : start + n] = 0
    meta[(ROW_OWNER, ROW_ALLOC, ROW_START), start : start + n] = -1
    times[:, start] = 0.0


def _regions_of(meta: I64, agent: int) -> int:
    return sum(1 for o in meta[ROW_OWNER].tolist() if o == agent)


def eviction_order(meta: I64, times: F64, policy: int) -> I64:
    """See :func:`.memory_kernels.eviction_order`."""
    if policy == EVICT_NONE:
        return np.empty(0, dtype=np.int64)

    def key(s: int) -> tuple[float, float, int]:
        alloc_id = int(meta[ROW_ALLOC, s])
        last, inserted = float(times[ROW_LAST_ACCESS, s]), float(times[ROW_INSERTED, s])
        if policy == EVICT_LRU:
            return (last, 0.0, alloc_id)
        if policy == EVICT_LFU:
            return (float(meta[ROW_COUNT, s]), last, alloc_id)
        if policy == EVICT_FIFO:
            return (inserted, 0.0, alloc_id)
        if policy == EVICT_TTL:
            return (float(times[ROW_DEADLINE, s]), inserted, alloc_id)
        raise KernelInputError(f"unknown eviction policy code {policy}")

    victims = [s for s in _starts(meta) if meta[ROW_PINNED, s] == 0]
    return np.array(sorted(victims, key=key), dtype=np.int64)


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
    """See :func:`.memory_kernels.allocate`."""
    if limit_regions >= 0 and _regions_of(meta, agent) + n_regions > limit_regions:
        return STATUS_OVER_LIMIT, -1, 0
    start = find_run(meta, n_regions)
    victims: list[int] = []
    if start < 0:
        is_free = [o == -1 for o in meta[ROW_OWNER].tolist()]
        for s in eviction_order(meta, times, policy).tolist():
            victims.append(s)
            for r in range(s, s + int(meta[ROW_NREGIONS, s])):
                is_free[r] = True
            start = _first_fit(is_free, n_regions)
            if start >= 0:
                break
        if start < 0:
            return STATUS_OUT_OF_MEMORY, -1, 0
    # Only the victims inside the chosen window are really needed.
    n_evicted = 0
    for s in victims:
        if s < start + n_regions and s + int(meta[ROW_NREGIONS, s]) > start:
            evicted[n_evicted] = meta[ROW_ALLOC, s]
            n_evicted += 1
            _clear(meta, times, s)
    meta[ROW_OWNER, start : start + n_regions] = agent
    meta[ROW_ALLOC, start : start + n_regions] = alloc_id
    meta[ROW_START, start : start + n_regions] = start
    meta[ROW_NREGIONS, start] = n_regions
    meta[ROW_NBYTES, start] = nbytes
    meta[ROW_COUNT, start] = 1
    meta[ROW_PINNED, start] = int(pinned)
    times[ROW_LAST_ACCESS, start] = now
    times[ROW_INSERTED, start] = now
    times[ROW_DEADLINE, start] = deadline
    return STATUS_OK, start, n_evicted


def free(meta: I64, times: F64, alloc_id: int, start: int) -> int:
    """See :func:`.memory_kernels.free`."""
    if not _is_live(meta, alloc_id, start):
        return STATUS_UNKNOWN_ALLOCATION
    _clear(meta, times, start)
    return STATUS_OK


def touch(meta: I64, times: F64, alloc_id: int, start: int, now: float) -> int:
    """See :func:`.memory_kernels.touch`."""
    if not _is_live(meta, alloc_id, start):
        return STATUS_UNKNOWN_ALLOCATION
    meta[ROW_COUNT, start] += 1
    times[ROW_LAST_ACCESS, start] = now
    return STATUS_OK


def transfer(
    meta: I64, alloc_id: int, start: int, from_agent: int, to_agent: int, limit_regions: int
) -> int:
    """See :func:`.memory_kernels.transfer`."""
    if not _is_live(meta, alloc_id, start):
        return STATUS_UNKNOWN_ALLOCATION
    if meta[ROW_OWNER, start] != from_agent:
        return STATUS_NOT_OWNER
    n = int(meta[ROW_NREGIONS, start])
    if (
        from_agent != to_agent
        and limit_regions >= 0
        and _regions_of(meta, to_agent) + n > limit_regions
    ):
        return STATUS_OVER_LIMIT
    meta[ROW_OWNER, start : start + n] = to_agent
    return STATUS_OK


def gc(meta: I64, times: F64, dead_agents: I64, freed: I64) -> int:
    """See :func:`.memory_kernels.gc`."""
    dead = set(dead_agents.tolist())
    count = 0
    for s in _starts(meta):
        if int(meta[ROW_OWNER, s]) in dead:
            freed[count] = meta[ROW_ALLOC, s]
            count += 1
            _clear(meta, times, s)
    return count


def expire(meta: I64, times: F64, now: float, freed: I64) -> int:
    """See :func:`.memory_kernels.expire`."""
    count = 0
    for s in _starts(meta):
        if meta[ROW_PINNED, s] == 0 and times[ROW_DEADLINE, s] <= now:
            freed[count] = meta[ROW_ALLOC, s]
            count += 1
            _clear(meta, times, s)
    return count
