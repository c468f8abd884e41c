"""Errors raised by the kernels' Python wrappers.

The kernels themselves never raise: they return status codes, and the wrappers translate each
code into one of these at the call site. They belong to the package-wide
tree (``multiswarm.errors.MultiswarmError``), which imports nothing heavy, so the kernels can
still be used and tested on their own.
"""

from __future__ import annotations

from multiswarm.errors import MultiswarmError

__all__ = [
    "AgentOverLimit",
    "KernelError",
    "KernelInputError",
    "NotOwner",
    "PoolError",
    "PoolOutOfMemory",
    "UnknownAllocation",
]


class KernelError(MultiswarmError):
    """Base of every error raised by ``multiswarm.kernels``."""


class KernelInputError(KernelError, ValueError):
    """An input array has the wrong shape, dtype or values, or an option is unknown."""


class PoolError(KernelError):
    """Base of the errors raised by :class:`multiswarm.kernels.memory.RegionPool`."""


class PoolOutOfMemory(PoolError, MemoryError):
    """No contiguous run of free regions fits the request, even after eviction."""


class AgentOverLimit(PoolError, MemoryError):
    """The request would take an agent past its region limit."""


class UnknownAllocation(PoolError, ValueError):
    """The allocation was freed, evicted, garbage-collected, or never belonged to this pool."""


class NotOwner(PoolError, ValueError):
    """The agent named as the current owner of an allocation does not own it."""
