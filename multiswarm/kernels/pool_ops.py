"""The parts of :class:`~multiswarm.kernels.memory.RegionPool` that are not the pool itself:
the kernel interface it runs on (Numba or the pure-Python reference), argument checks, and
reports over its region table."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from . import reference_memory
from .constants import (
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
)
from .errors import KernelInputError
from .pool_types import RegionTable

__all__ = ["PoolOps", "agent_id", "load_ops", "longest_free_run", "positive_int", "region_table"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class PoolOps(Protocol):
    """The kernel functions a pool runs on: :mod:`.memory_kernels` or :mod:`.reference_memory`."""

    def allocate(
        self,
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
    ) -> tuple[int, int, int]: ...

    def free(self, meta: I64, times: F64, alloc_id: int, start: int) -> int: ...

    def touch(self, meta: I64, times: F64, alloc_id: int, start: int, now: float) -> int: ...

    def transfer(
        self,
        meta: I64,
        alloc_id: int,
        start: int,
        from_agent: int,
        to_agent: int,
        limit_regions: int,
    ) -> int: ...

    def gc(self, meta: I64, times: F64, dead_agents: I64, freed: I64) -> int: ...

    def expire(self, meta: I64, times: F64, now: float, freed: I64) -> int: ...

    def eviction_order(self, meta: I64, times: F64, policy: int) -> I64: ...


def load_ops(backend: str) -> PoolOps:
    if backend == "numba":
        from . import memory_kernels

        return memory_kernels
    if backend == "python":
        return reference_memory
    raise KernelInputError(f"unknown backend {backend!r}; expected 'numba' or 'python'")


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise KernelInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


#: Largest agent id, region count or byte size the pool takes: the region table holds owners as
#: int64, where a negative owner means free (an id of 2**63 wrapped to one: found in review).
MAX_ID = 2**62


def agent_id(name: str, value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not 0 <= value <= MAX_ID
    ):
        raise KernelInputError(f"{name} must be an integer from 0 to 2**62, got {value!r}")
    return int(value)


def longest_free_run(owner: I64) -> int:
    vacant = np.concatenate(([0], (owner < 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(vacant))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


def region_table(m: I64, t: F64) -> RegionTable:
    """Copy of a pool's region table (``meta``, ``times``), for inspection and tests."""
    return RegionTable(
        m[ROW_OWNER].copy(),
        m[ROW_ALLOC].copy(),
        m[ROW_START].copy(),
        m[ROW_NREGIONS].copy(),
        m[ROW_NBYTES].copy(),
        m[ROW_COUNT].copy(),
        m[ROW_PINNED].copy(),
        t[ROW_LAST_ACCESS].copy(),
        t[ROW_INSERTED].copy(),
        t[ROW_DEADLINE].copy(),
    )
