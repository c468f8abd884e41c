"""One view of many coordination partitions (decision 47): the facade reads each partition as
before and merges here. Pure functions, no Redis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from multiswarm.api_types import LeaderInfo, PartitionLeader
from multiswarm.errors import BadRequest
from multiswarm.messages import Task
from multiswarm.resources import PoolUsage


def sum_counts(each: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Field-wise sums, keys in first-seen order."""
    out: dict[str, int] = {}
    for counts in each:
        for k, v in counts.items():
            out[k] = out.get(k, 0) + v
    return out


def newest_tasks(each: Iterable[Sequence[Task]], limit: int) -> list[Task]:
    """The ``limit`` most recently updated of all lists (each is its partition's newest)."""
    merged = [t for tasks in each for t in tasks]
    merged.sort(key=lambda t: t.updated_ms, reverse=True)
    return merged[:limit]


def merge_leaders(each: Sequence[LeaderInfo | None]) -> LeaderInfo | None:
    """Partition 0's leader (the lowest-numbered held one's while it is vacant), with every
    partition's in ``partitions``; None when every lease is vacant. One partition: as is."""
    if len(each) == 1:
        return each[0]
    held = [info for info in each if info is not None]
    if not held:
        return None
    partitions = [
        PartitionLeader(
            partition=k,
            holder=info.holder if info else None,
            epoch=info.epoch if info else 0,
            lease_ms_left=info.lease_ms_left if info else 0,
        )
        for k, info in enumerate(each)
    ]
    return msgspec.structs.replace(held[0], partitions=partitions)


def vacant(leader: LeaderInfo | None, partitions: int) -> list[int]:
    """The partitions whose lease nobody holds."""
    if leader is None:
        return list(range(partitions))
    return [p.partition for p in leader.partitions if p.holder is None]


def merge_pools(each: Iterable[Mapping[str, PoolUsage]]) -> list[PoolUsage]:
    """One pool per type over all partitions' shares (capacities, allocations and holders
    added up), by type."""
    out: dict[str, PoolUsage] = {}
    for pools in each:
        for t, u in pools.items():
            seen = out.get(t)
            if seen is None:
                out[t] = u
                continue
            holders = dict(seen.holders)
            for sid, n in u.holders.items():
                holders[sid] = holders.get(sid, 0) + n
            out[t] = PoolUsage(
                type=t,
                capacity=seen.capacity + u.capacity,
                allocated=seen.allocated + u.allocated,
                free=seen.free + u.free,
                holders=dict(sorted(holders.items())),
            )
    return [out[t] for t in sorted(out)]


def split_capacity(capacity: int, allocated: Sequence[int]) -> list[int]:
    """Each partition's share of a pool of ``capacity``: what it has allocated, plus an even
    part of the rest (the remainder to the lowest partitions), so a resize that the whole
    pool allows never falls below one partition's allocations.

    Raises
    ------
    BadRequest
        ``capacity`` is below what all partitions have allocated.
    """
    used = sum(allocated)
    if capacity < used:
        raise BadRequest("BAD_REQUEST", f"capacity {capacity} is below the {used} allocated now")
    rest, n = capacity - used, len(allocated)
    return [a + rest // n + (1 if k < rest % n else 0) for k, a in enumerate(allocated)]


def combine_outcomes(outcomes: Iterable[str]) -> str:
    """One ``init_pool`` outcome of the partitions' (``created`` > ``resized`` >
    ``unchanged``)."""
    seen = set(outcomes)
    for o in ("created", "resized"):
        if o in seen:
            return o
    return "unchanged"
