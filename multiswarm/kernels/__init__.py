"""Numba kernels over NumPy arrays: batch scheduling and the memory region pool.

Importing this package does not import Numba (the CLI starts fast); the names below that need
it are loaded on first access:

* :func:`schedule`, :class:`ScheduleResult`, :func:`deps_to_csr` from :mod:`.scheduling`;
  :func:`schedule_kernel`, the compiled core, lives in :mod:`.scheduling_kernel`.
* :class:`RegionPool` from :mod:`.memory`, whose kernels are in :mod:`.memory_kernels`;
  :class:`Allocation`, :class:`Eviction`, :class:`PoolUsage`, :class:`AgentUsage` from
  :mod:`.pool_types`.

Every kernel has a plain-Python reference defining the expected answer
(:mod:`.reference`, :mod:`.reference_memory`), selected with ``backend="python"``.
Codes (strategies, reasons, health, eviction policies) are in :mod:`.constants`, errors in
:mod:`.errors`; both are light and imported eagerly. Kernels are compiled with
``cache=True``: the first call in a fresh install compiles (a few seconds), later processes
load the machine code from ``__pycache__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiswarm.lazy import lazy_getattr

from .constants import (
    ALL_CAPABLE_AGENTS_FULL,
    ASSIGNED,
    CAPABILITY,
    DEAD,
    DEGRADED,
    DEPENDENCY_CYCLE,
    DEPENDENCY_UNASSIGNED,
    EVICTION_POLICIES,
    HEALTHY,
    LEAST_LOADED,
    LOAD_BALANCED,
    NO_CAPABLE_AGENT,
    NO_HEALTHY_CAPABLE_AGENT,
    REASON_NAMES,
    ROUND_ROBIN,
    STRATEGIES,
    UNHEALTHY,
)
from .errors import (
    AgentOverLimit,
    KernelError,
    KernelInputError,
    NotOwner,
    PoolError,
    PoolOutOfMemory,
    UnknownAllocation,
)

if TYPE_CHECKING:
    from .memory import RegionPool
    from .pool_types import AgentUsage, Allocation, Eviction, PoolUsage
    from .scheduling import ScheduleResult, deps_to_csr, schedule, schedule_kernel

__all__ = [
    "ALL_CAPABLE_AGENTS_FULL",
    "ASSIGNED",
    "CAPABILITY",
    "DEAD",
    "DEGRADED",
    "DEPENDENCY_CYCLE",
    "DEPENDENCY_UNASSIGNED",
    "EVICTION_POLICIES",
    "HEALTHY",
    "LEAST_LOADED",
    "LOAD_BALANCED",
    "NO_CAPABLE_AGENT",
    "NO_HEALTHY_CAPABLE_AGENT",
    "REASON_NAMES",
    "ROUND_ROBIN",
    "STRATEGIES",
    "UNHEALTHY",
    "AgentOverLimit",
    "AgentUsage",
    "Allocation",
    "Eviction",
    "KernelError",
    "KernelInputError",
    "NotOwner",
    "PoolError",
    "PoolOutOfMemory",
    "PoolUsage",
    "RegionPool",
    "ScheduleResult",
    "UnknownAllocation",
    "deps_to_csr",
    "schedule",
    "schedule_kernel",
]

# Name -> submodule for the names whose module imports Numba.
_LAZY = {
    "schedule": ".scheduling",
    "schedule_kernel": ".scheduling",
    "deps_to_csr": ".scheduling",
    "ScheduleResult": ".scheduling",
    "RegionPool": ".memory",
    "Allocation": ".pool_types",
    "Eviction": ".pool_types",
    "PoolUsage": ".pool_types",
    "AgentUsage": ".pool_types",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
