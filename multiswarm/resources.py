"""Resource pools shared by the swarms of a namespace: allocate and release atomically in Lua.

A pool per resource type (``cpu``, ``memory`` or any custom id) has a capacity set by
:meth:`ResourcePools.init_pool`. Amounts are non-negative integers in the pool's own unit; the
convention is millicores for ``cpu`` and MiB for ``memory``. Each allocation is one Lua script
that checks the free amount and books it in the same step, so no interleaving of processes can
overdraw a pool; a refusal raises :class:`~multiswarm.errors.ResourceExhausted` and books
nothing. Only live swarms (registered, not ``completed``/``failed``) may allocate.

When a swarm ends, :func:`release_swarm_resources` gives back all it holds (idempotent);
:meth:`ResourcePools.reclaim` does the same for every ended or unknown swarm, as a periodic
safety net should the process ending a swarm die before releasing. See ``docs/resilience.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from multiswarm.errors import InvalidArgumentError
from multiswarm.keys import Keys, check_id
from multiswarm.ops import resources as ops
from multiswarm.scripts import Scripts

#: Largest capacity or amount: Lua numbers are doubles, exact up to 2**53.
MAX_AMOUNT = 2**53 - 1

#: Pool types with a conventional unit; any other id is a custom pool.
STANDARD_TYPES = {"cpu": "millicores", "memory": "MiB"}


class PoolUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One pool's state.

    Attributes
    ----------
    type:
        Resource type.
    capacity, allocated, free:
        In the pool's unit; ``allocated + free == capacity`` always.
    holders:
        Swarm id -> amount held (only swarms holding something).
    """

    type: str
    capacity: int
    allocated: int
    free: int
    holders: dict[str, int]


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    """The result of an allocation.

    Attributes
    ----------
    swarm_id, type:
        Who got what.
    amount:
        Granted now.
    held:
        All the swarm holds of this pool now.
    allocated, capacity:
        The pool's totals after the allocation.
    """

    swarm_id: str
    type: str
    amount: int
    held: int
    allocated: int
    capacity: int


def _amount(value: int, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_AMOUNT:
        raise InvalidArgumentError(
            f"{what} must be an integer in [{minimum}, {MAX_AMOUNT}], got {value!r}"
        )
    return value


class ResourcePools:
    """Allocate and release pooled resources for swarms.

    Parameters
    ----------
    scripts:
        Scripts bound to a client.
    keys:
        The namespace (its swarms hash decides which swarms are live).
    """

    def __init__(self, scripts: Scripts, keys: Keys) -> None:
        self.scripts = scripts
        self.keys = keys

    async def init_pool(self, type: str, capacity: int) -> str:
        """Create pool ``type`` with ``capacity``, or change its capacity.

        Returns
        -------
        str
            ``created`` | ``resized`` | ``unchanged``.

        Raises
        ------
        InvalidIdError
            ``type`` is not an id.
        ValueError
            ``capacity`` is not an integer in [0, 2**53); :class:`~multiswarm.errors.BadRequest`
            (a ValueError) when it is below what is allocated now.
        """
        rtype = check_id(type, "resource type")
        cap = _amount(capacity, "capacity", 0)
        return await ops.init_pool(self.scripts, self.keys, rtype, cap)

    async def allocate(self, swarm_id: str, type: str, amount: int) -> Allocation:
        """Book ``amount`` of pool ``type`` for ``swarm_id``, atomically.

        Raises
        ------
        ResourceExhausted
            Less than ``amount`` is free; nothing was booked.
        NotFound
            No such pool, or the swarm is not registered or has ended.
        ValueError
            ``amount`` is not a positive integer; InvalidIdError for malformed ids.
        """
        sid, rtype = check_id(swarm_id, "swarm id"), check_id(type, "resource type")
        n = _amount(amount, "amount", 1)
        booked = await ops.allocate_resource(self.scripts, self.keys, sid, rtype, n)
        return Allocation(
            swarm_id=sid,
            type=rtype,
            amount=n,
            held=booked.held,
            allocated=booked.allocated,
            capacity=booked.capacity,
        )

    async def release(self, swarm_id: str, type: str, amount: int | None = None) -> int:
        """Give back ``amount`` (None: everything held) of pool ``type``; returns what was
        released, at most what the swarm held (so a retried release is harmless)."""
        sid, rtype = check_id(swarm_id, "swarm id"), check_id(type, "resource type")
        n = None if amount is None else _amount(amount, "amount", 1)
        return (await ops.release_resource(self.scripts, self.keys, sid, rtype, n)).released

    async def release_all(self, swarm_id: str) -> dict[str, int]:
        """Give back everything ``swarm_id`` holds; returns type -> amount released."""
        return await release_swarm_resources(self.scripts, self.keys, swarm_id)

    async def reclaim(self) -> list[tuple[str, str, int]]:
        """Release what ended (completed, failed) or unknown swarms still hold.

        Returns
        -------
        list of (swarm id, type, amount released)
        """
        return [
            (r.swarm_id, r.type, r.amount)
            for r in await ops.reclaim_resources(self.scripts, self.keys)
        ]

    async def usage(self, types: Sequence[str] | None = None) -> dict[str, PoolUsage]:
        """Every pool (or those of ``types``), by type, read in one atomic step."""
        read = await ops.read_resources(self.scripts, self.keys)
        caps: dict[str, int] = {}
        used: dict[str, int] = {}
        for field, amount in read.pools.items():
            kind, _, rtype = field.partition(":")
            (caps if kind == "cap" else used)[rtype] = amount
        holders: dict[str, dict[str, int]] = {t: {} for t in caps}
        for field, amount in read.holders.items():
            rtype, _, sid = field.partition(":")
            holders.setdefault(rtype, {})[sid] = amount
        wanted = sorted(caps) if types is None else [t for t in types if t in caps]
        return {
            t: PoolUsage(
                type=t,
                capacity=caps[t],
                allocated=used.get(t, 0),
                free=caps[t] - used.get(t, 0),
                holders=dict(sorted(holders[t].items())),
            )
            for t in wanted
        }

    async def held(self, swarm_id: str) -> dict[str, int]:
        """What ``swarm_id`` holds, by type."""
        sid = check_id(swarm_id, "swarm id")
        return {t: u.holders[sid] for t, u in (await self.usage()).items() if sid in u.holders}


async def release_swarm_resources(scripts: Scripts, keys: Keys, swarm_id: str) -> dict[str, int]:
    """Give back everything ``swarm_id`` holds in every pool (call it when the swarm ends).

    Idempotent: a second call releases nothing. Returns type -> amount released.
    """
    return await ops.release_swarm_resources(scripts, keys, check_id(swarm_id, "swarm id"))
