"""Values handed out by :class:`multiswarm.kernels.memory.RegionPool`: handles and reports.

Kept apart from the pool so that code that only reads usage or evictions need not load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["AgentUsage", "Allocation", "Eviction", "PoolUsage", "RegionTable"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Allocation:
    """Handle to a live allocation. Stale once freed, evicted, collected or transferred.

    Attributes
    ----------
    id
        Unique within the pool, increasing with each allocation.
    agent
        Owner when the handle was made.
    start_region, n_regions
        The run of regions held.
    nbytes
        Bytes requested; the view has this length.
    offset
        Byte offset of the first byte in the pool's buffer.
    """

    id: int
    agent: int
    start_region: int
    n_regions: int
    nbytes: int
    offset: int


@dataclass(frozen=True, slots=True)
class Eviction:
    """One allocation evicted to make room for another agent's request.

    ``allocation`` was evicted by ``policy`` at clock time ``at_s`` for a request of
    ``for_agent``.
    """

    allocation: Allocation
    policy: str
    at_s: float
    for_agent: int


class AgentUsage(NamedTuple):
    """One agent's share of the pool: ``regions`` held, their ``bytes``, the ``requested_bytes``
    inside them, its number of ``allocations`` and its ``limit_regions`` (None: no limit)."""

    regions: int
    bytes: int
    requested_bytes: int
    allocations: int
    limit_regions: int | None


class PoolUsage(NamedTuple):
    """Pool-wide usage. Bytes count whole regions except ``requested_bytes``;
    ``largest_free_bytes`` is the longest free run, the largest request that fits unevicted."""

    total_bytes: int
    used_bytes: int
    free_bytes: int
    requested_bytes: int
    largest_free_bytes: int
    per_agent: dict[int, AgentUsage]


class RegionTable(NamedTuple):
    """A copy of the region table, one array per row, each ``[n_regions]`` (see ``ROW_*``)."""

    owner: I64
    alloc_id: I64
    start: I64
    n_regions: I64
    nbytes: I64
    access_count: I64
    pinned: I64
    last_access_s: F64
    inserted_s: F64
    deadline_s: F64
