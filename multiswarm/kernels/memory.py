"""A per-node pool of working memory for agents (DESIGN.md, Memory regions).

The bytes live in one buffer, a NumPy array or a :class:`multiprocessing.shared_memory.
SharedMemory` segment, cut into fixed-size regions. An allocation is a contiguous run of regions
owned by one agent. The region table is two NumPy arrays (layout: ``constants.ROW_*``), and
every decision over it (first fit, victim selection, frees, transfers, garbage collection) is a
kernel of :mod:`.memory_kernels`, or of :mod:`.reference_memory` with ``backend="python"``.

The table is private to the process holding the pool; with shared memory other processes can
read and write an allocation's bytes at ``Allocation.offset``, but only the holder allocates.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.shared_memory import SharedMemory
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt

from .constants import (
    EVICTION_POLICIES,
    N_FLOAT_ROWS,
    N_INT_ROWS,
    ROW_ALLOC,
    ROW_NBYTES,
    ROW_OWNER,
    ROW_START,
    STATUS_NOT_OWNER,
    STATUS_OK,
    STATUS_OUT_OF_MEMORY,
    STATUS_OVER_LIMIT,
)
from .errors import (
    AgentOverLimit,
    KernelInputError,
    NotOwner,
    PoolOutOfMemory,
    UnknownAllocation,
)
from .pool_ops import agent_id, load_ops, longest_free_run, positive_int, region_table
from .pool_types import AgentUsage, Allocation, Eviction, PoolUsage, RegionTable

__all__ = [
    "DEFAULT_POOL_BYTES",
    "DEFAULT_REGION_BYTES",
    "AgentUsage",
    "Allocation",
    "Eviction",
    "PoolUsage",
    "RegionPool",
    "RegionTable",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Pool size in bytes (DESIGN.md, Memory regions: 28 MiB).
DEFAULT_POOL_BYTES = 28 * 1024 * 1024
#: Region size in bytes (DESIGN.md, Memory regions: 64 KiB), so 448 regions by default.
DEFAULT_REGION_BYTES = 64 * 1024


#: Shared segments this process created and has not unlinked, by name (see
#: :func:`unlink_shared_segments`).
_CREATED: dict[str, SharedMemory] = {}


def unlink_shared_segments() -> int:
    """Unlink every shared segment this process created and still holds; returns how many.

    For a process that must end at once (``os._exit``, skipping :meth:`RegionPool.close`): the
    segment would outlive it in ``/dev/shm`` and the resource tracker would warn after the
    process's last line. Views of the buffer stay valid until the process ends.
    """
    names = list(_CREATED)
    for name in names:
        _CREATED.pop(name).unlink()
    return len(names)


class RegionPool:
    """Contiguous-region allocator for agents' working memory.

    Parameters
    ----------
    total_bytes
        Pool size; a multiple of ``region_bytes``. Default :data:`DEFAULT_POOL_BYTES` (28 MiB).
    region_bytes
        Allocation unit. Default :data:`DEFAULT_REGION_BYTES` (64 KiB).
    policy
        What to do when no free run fits: ``"lru"``, ``"lfu"``, ``"fifo"``, ``"ttl"`` (evict
        whole allocations in that order until a run fits; see ``constants.EVICT_*``) or
        ``"none"`` (raise). Default ``"lru"``, the first policy DESIGN.md names.
    shared
        Keep the bytes in a new :class:`~multiprocessing.shared_memory.SharedMemory` segment
        (unlinked by :meth:`close`) rather than a process-local array. Default False.
    name
        Name of the shared segment; default: chosen by the system. Only with ``shared``.
    clock
        Seconds, monotonic; used for access times and TTLs. Default :func:`time.monotonic`.
    backend
        ``"numba"`` (default) or ``"python"``, the plain-Python reference kernels.
    evictions_kept
        How many :class:`Eviction` records :attr:`evictions` keeps, newest last. Default 1024,
        a bound so that a long-running worker does not grow without limit.

    Raises
    ------
    KernelInputError
        On a non-positive size, a pool that is not a whole number of regions, an unknown policy
        or backend, or ``name`` without ``shared``.

    Notes
    -----
    Views returned by :meth:`view` must be released before :meth:`close` when ``shared``.
    """

    def __init__(
        self,
        total_bytes: int = DEFAULT_POOL_BYTES,
        region_bytes: int = DEFAULT_REGION_BYTES,
        *,
        policy: str = "lru",
        shared: bool = False,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        backend: Literal["numba", "python"] = "numba",
        evictions_kept: int = 1024,
    ) -> None:
        self.total_bytes = positive_int("total_bytes", total_bytes)
        self.region_bytes = positive_int("region_bytes", region_bytes)
        if self.total_bytes % self.region_bytes:
            raise KernelInputError(
                f"total_bytes ({total_bytes}) must be a multiple of region_bytes ({region_bytes})"
            )
        if policy not in EVICTION_POLICIES:
            raise KernelInputError(
                f"unknown policy {policy!r}; expected one of {sorted(EVICTION_POLICIES)}"
            )
        if name is not None and not shared:
            raise KernelInputError("name is only meaningful with shared=True")
        self.policy = policy
        self.n_regions = self.total_bytes // self.region_bytes
        self._policy_code = EVICTION_POLICIES[policy]
        self._ops = load_ops(backend)
        self._clock = clock
        self._meta = np.zeros((N_INT_ROWS, self.n_regions), dtype=np.int64)
        self._meta[(ROW_OWNER, ROW_ALLOC, ROW_START), :] = -1
        self._times = np.zeros((N_FLOAT_ROWS, self.n_regions), dtype=np.float64)
        self._scratch = np.empty(self.n_regions, dtype=np.int64)
        self._live: dict[int, Allocation] = {}
        self._limits: dict[int, int] = {}
        self._next_id = 0
        self.evictions: deque[Eviction] = deque(maxlen=evictions_kept)
        self._shm: SharedMemory | None = None
        if shared:
            self._shm = SharedMemory(name=name, create=True, size=self.total_bytes)
            _CREATED[self._shm.name] = self._shm
            self._data = np.ndarray((self.total_bytes,), dtype=np.uint8, buffer=self._shm.buf)
        else:
            self._data = np.zeros(self.total_bytes, dtype=np.uint8)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def shm_name(self) -> str | None:
        """Name of the shared memory segment, or None for a process-local buffer."""
        return None if self._shm is None else self._shm.name

    def close(self) -> None:
        """Release the buffer; a shared segment is closed and unlinked. Idempotent."""
        self._data = np.zeros(0, dtype=np.uint8)
        if self._shm is not None:
            shm, self._shm = self._shm, None
            _CREATED.pop(shm.name, None)
            shm.close()
            shm.unlink()

    def __enter__(self) -> RegionPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- limits -------------------------------------------------------------------------------

    def set_limit(
        self, agent: int, *, max_regions: int | None = None, max_bytes: int | None = None
    ) -> None:
        """Cap the regions ``agent`` may hold; with neither argument, remove its cap.

        ``max_bytes`` counts whole regions (rounded down), since a region is the unit held.
        With both, the stricter applies. A cap below current holdings refuses new allocations
        and transfers to the agent but takes nothing away.
        """
        agent = agent_id("agent", agent)
        caps = []
        if max_regions is not None:
            caps.append(agent_id("max_regions", max_regions))
        if max_bytes is not None:
            caps.append(agent_id("max_bytes", max_bytes) // self.region_bytes)
        if caps:
            self._limits[agent] = min(caps)
        else:
            self._limits.pop(agent, None)

    def limit(self, agent: int) -> int | None:
        """Regions ``agent`` may hold, or None if unlimited."""
        return self._limits.get(agent)

    # --- operations ---------------------------------------------------------------------------

    def allocate(
        self, agent: int, nbytes: int, *, ttl_s: float | None = None, pinned: bool = False
    ) -> Allocation:
        """Give ``agent`` a contiguous run of regions holding ``nbytes`` (first fit).

        When no free run fits, whole allocations are evicted by the pool's policy, the fewest
        that open a run, and recorded in :attr:`evictions`.

        Parameters
        ----------
        agent
            Agent id, ``>= 0``.
        nbytes
            ``> 0``; rounded up to whole regions.
        ttl_s
            Seconds until :meth:`expire` may drop the allocation (also its order under the
            ``"ttl"`` policy). Default None: no deadline.
        pinned
            Never evicted nor expired (still freed by :meth:`gc`). Default False.

        Raises
        ------
        AgentOverLimit
            The agent would hold more regions than its limit.
        PoolOutOfMemory
            No run fits, even after evicting every unpinned allocation; nothing was evicted.
        """
        agent = agent_id("agent", agent)
        nbytes = positive_int("nbytes", nbytes)
        if ttl_s is not None and not ttl_s >= 0:
            raise KernelInputError(f"ttl_s must be >= 0, got {ttl_s!r}")
        n_regions = -(-nbytes // self.region_bytes)
        now = self._clock()
        deadline = np.inf if ttl_s is None else now + ttl_s
        limit = self._limits.get(agent, -1)
        status, start, n_evicted = self._ops.allocate(
            self._meta,
            self._times,
            agent,
            n_regions,
            nbytes,
            self._next_id,
            now,
            deadline,
            pinned,
            limit,
            self._policy_code,
            self._scratch,
        )
        if status == STATUS_OVER_LIMIT:
            raise AgentOverLimit(
                f"agent {agent} holds {self._regions_of(agent)} regions; {n_regions} more would "
                f"pass its limit of {limit}"
            )
        if status == STATUS_OUT_OF_MEMORY:
            free = int((self._meta[ROW_OWNER] < 0).sum())
            raise PoolOutOfMemory(
                f"no run of {n_regions} regions for {nbytes} bytes (agent {agent}); "
                f"{free} of {self.n_regions} regions free, policy {self.policy!r}"
            )
        for alloc_id in self._scratch[:n_evicted].tolist():
            victim = self._live.pop(alloc_id)
            self.evictions.append(Eviction(victim, self.policy, now, agent))
        handle = Allocation(
            self._next_id, agent, start, n_regions, nbytes, start * self.region_bytes
        )
        self._live[handle.id] = handle
        self._next_id += 1
        return handle

    def free(self, allocation: Allocation | int) -> None:
        """Return an allocation's regions to the pool.

        Raises
        ------
        UnknownAllocation
            Not live (already freed, evicted, expired or collected).
        """
        handle = self._resolve(allocation)
        self._check(self._ops.free(self._meta, self._times, handle.id, handle.start_region))
        del self._live[handle.id]

    def transfer(
        self, allocation: Allocation | int, to_agent: int, *, from_agent: int | None = None
    ) -> Allocation:
        """Hand an allocation to ``to_agent``; the bytes stay where they are.

        Parameters
        ----------
        allocation
            Handle or id.
        to_agent
            New owner.
        from_agent
            Expected current owner. Default: the agent recorded in ``allocation`` (with an id,
            the current owner).

        Returns
        -------
        A new handle naming ``to_agent``; the old one stays usable for the bytes.

        Raises
        ------
        UnknownAllocation, NotOwner, AgentOverLimit
            Not live; ``from_agent`` does not own it; ``to_agent`` would pass its limit.
        """
        handle = self._resolve(allocation)
        to_agent = agent_id("to_agent", to_agent)
        if from_agent is None:
            src = allocation.agent if isinstance(allocation, Allocation) else handle.agent
        else:
            src = agent_id("from_agent", from_agent)
        limit = self._limits.get(to_agent, -1)
        status = self._ops.transfer(
            self._meta, handle.id, handle.start_region, src, to_agent, limit
        )
        if status == STATUS_NOT_OWNER:
            raise NotOwner(f"allocation {handle.id} is owned by agent {handle.agent}, not {src}")
        if status == STATUS_OVER_LIMIT:
            raise AgentOverLimit(
                f"agent {to_agent} holds {self._regions_of(to_agent)} regions; "
                f"{handle.n_regions} more would pass its limit of {limit}"
            )
        self._check(status)
        moved = Allocation(
            handle.id,
            to_agent,
            handle.start_region,
            handle.n_regions,
            handle.nbytes,
            handle.offset,
        )
        self._live[handle.id] = moved
        return moved

    def gc(self, dead_agents: Iterable[int]) -> list[Allocation]:
        """Free every allocation, pinned or not, of the given agents; return what was freed."""
        dead = np.unique(np.array([agent_id("dead agent", a) for a in dead_agents], np.int64))
        count = self._ops.gc(self._meta, self._times, dead, self._scratch)
        return [self._live.pop(i) for i in self._scratch[:count].tolist()]

    def expire(self) -> list[Allocation]:
        """Free every unpinned allocation whose TTL has run out; return what was freed."""
        count = self._ops.expire(self._meta, self._times, self._clock(), self._scratch)
        return [self._live.pop(i) for i in self._scratch[:count].tolist()]

    def touch(self, allocation: Allocation | int) -> None:
        """Record an access (for LRU and LFU). Raises :class:`UnknownAllocation` if not live."""
        handle = self._resolve(allocation)
        now = self._clock()
        self._check(self._ops.touch(self._meta, self._times, handle.id, handle.start_region, now))

    def view(self, allocation: Allocation | int, *, touch: bool = True) -> memoryview:
        """Writable ``memoryview`` of the allocation's ``nbytes`` bytes; records an access
        unless ``touch`` is False. Raises :class:`UnknownAllocation` if not live."""
        handle = self._resolve(allocation)
        if touch:
            now = self._clock()
            status = self._ops.touch(self._meta, self._times, handle.id, handle.start_region, now)
            self._check(status)
        return self._data[handle.offset : handle.offset + handle.nbytes].data

    # --- inspection ---------------------------------------------------------------------------

    def allocations(self) -> list[Allocation]:
        """Live allocations, by first region."""
        return sorted(self._live.values(), key=lambda a: a.start_region)

    def eviction_order(self) -> list[Allocation]:
        """Live allocations in the order the policy would evict them now (pinned ones left out)."""
        starts = self._ops.eviction_order(self._meta, self._times, self._policy_code)
        return [self._live[int(self._meta[ROW_ALLOC, s])] for s in starts.tolist()]

    def usage(self) -> PoolUsage:
        """Bytes used and free, pool-wide and per agent holding at least one region."""
        owner = self._meta[ROW_OWNER]
        used_regions = int((owner >= 0).sum())
        per_agent: dict[int, AgentUsage] = {}
        for agent in np.unique(owner[owner >= 0]).tolist():
            held = self.allocations_of(agent)
            regions = sum(a.n_regions for a in held)
            per_agent[agent] = AgentUsage(
                regions,
                regions * self.region_bytes,
                sum(a.nbytes for a in held),
                len(held),
                self._limits.get(agent),
            )
        return PoolUsage(
            total_bytes=self.total_bytes,
            used_bytes=used_regions * self.region_bytes,
            free_bytes=(self.n_regions - used_regions) * self.region_bytes,
            requested_bytes=int(self._meta[ROW_NBYTES].sum()),
            largest_free_bytes=longest_free_run(owner) * self.region_bytes,
            per_agent=per_agent,
        )

    def allocations_of(self, agent: int) -> list[Allocation]:
        """Live allocations owned by ``agent``, by first region."""
        return [a for a in self.allocations() if a.agent == agent]

    def table(self) -> RegionTable:
        """Copy of the region table, for inspection and tests."""
        return region_table(self._meta, self._times)

    # --- helpers ------------------------------------------------------------------------------

    def _resolve(self, allocation: Allocation | int) -> Allocation:
        alloc_id = allocation.id if isinstance(allocation, Allocation) else allocation
        handle = self._live.get(alloc_id)
        if handle is None or (
            isinstance(allocation, Allocation) and allocation.start_region != handle.start_region
        ):
            raise UnknownAllocation(f"allocation {alloc_id} is not live in this pool")
        return handle

    @staticmethod
    def _check(status: int) -> None:
        # The handle map and the table disagree only through a bug; fail loudly if they do.
        if status != STATUS_OK:
            raise UnknownAllocation(f"region table refused a live handle (status {status})")

    def _regions_of(self, agent: int) -> int:
        return int((self._meta[ROW_OWNER] == agent).sum())
