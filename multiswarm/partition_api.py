"""Routing of the facade's calls to coordination partitions (decisions 44, 46).

A call naming a swarm goes to the partition the swarm is placed in (the control slot's
directory, read once and remembered), a call naming a task to the partition holding it
(remembered from its submission, else found with one pipelined ``HEXISTS`` per partition),
and a submission to one partition for the whole batch (:func:`route_submission`). With one
partition every function here returns the facade itself without a Redis call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar

from multiswarm.api_types import Host, Part
from multiswarm.config import Settings
from multiswarm.connection import Client
from multiswarm.errors import CrossPartitionError, NotFound
from multiswarm.keys import Keys, check_id
from multiswarm.messages import TaskSpec
from multiswarm.ops import tasks as task_ops
from multiswarm.partitions import (
    partition_capabilities,
    reserve_task_routes,
    swarm_partitions,
)
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from multiswarm.tasks import TaskStore

T = TypeVar("T")

#: Task statuses a partition's backlog counts: tasks that still wait for a swarm, or for an
#: agent of the swarm they were assigned to.
BACKLOG_STATUSES = ("ready", "pending", "assigned")


class PartitionHost:
    """The components of one coordination partition, on the facade's client (a
    :class:`~multiswarm.api_types.Part`)."""

    def __init__(
        self, client: Client, settings: Settings, scripts: Scripts, keys: Keys, actor: str
    ) -> None:
        self.settings = settings
        self.client = client
        self.actor = actor
        self.keys = keys
        self.scripts = scripts
        self.registry = SwarmRegistry(scripts, keys, settings.max_swarms)
        self.tasks = TaskStore(scripts, keys)
        self.state = SwarmStateManager(
            scripts, keys, ttl_ms=settings.state_ttl_ms, snapshots_kept=settings.snapshots_kept
        )


async def fan_out(host: Host, fn: Callable[[Part], Awaitable[T]]) -> list[T]:
    """``fn`` of every partition, in partition order; concurrently when there are several
    (round trips overlap on the client's pool), directly when there is one."""
    if len(host.parts) == 1:
        return [await fn(host.parts[0])]
    return list(await asyncio.gather(*(fn(p) for p in host.parts)))


# -- swarms ------------------------------------------------------------------------------------
async def host_for_swarm(host: Host, swarm_id: str) -> Part:
    """The partition ``swarm_id`` is placed in.

    Raises
    ------
    NotFound
        With several partitions: the swarm is placed in none (so no partition knows it).
    InvalidIdError
        Malformed id.
    """
    sid = check_id(swarm_id, "swarm id")
    if len(host.parts) == 1:
        return host
    k = host.routes.swarms.get(sid)
    if k is None:
        k = (await swarm_partitions(host.scripts, host.settings, [sid]))[sid]
        if k is None:
            raise NotFound("NOT_FOUND", f"swarm {swarm_id}")
        host.routes.swarms[sid] = k
    return host.parts[k]


async def on_swarm(host: Host, swarm_id: str, fn: Callable[[Part], Awaitable[T]]) -> T:
    """``fn`` of the swarm's partition. A remembered route that turns out stale (the swarm
    was deleted and placed again elsewhere by another client: ``fn`` says NotFound) is read
    again once from the directory."""
    part = await host_for_swarm(host, swarm_id)
    try:
        return await fn(part)
    except NotFound:
        if host.routes.swarms.pop(swarm_id, None) is None:
            raise
        again = await host_for_swarm(host, swarm_id)
        if again is part:
            raise
        return await fn(again)


# -- tasks -------------------------------------------------------------------------------------
async def locate_tasks(host: Host, task_ids: Collection[str]) -> dict[str, int | None]:
    """The partition of each task (None: in none), remembered routes first, the others with
    one pipeline of ``HEXISTS`` per partition and id. Every id is 0 with one partition."""
    if len(host.parts) == 1:
        return dict.fromkeys(task_ids, 0)
    out: dict[str, int | None] = {}
    unknown = []
    for tid in task_ids:
        k = host.routes.task(tid)
        out[tid] = k
        if k is None:
            unknown.append(tid)
    if unknown:
        client, keys = host.client, [p.keys.tasks for p in host.parts]

        async def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for tid in unknown:
                for key in keys:
                    pipe.hexists(key, tid)
            return await pipe.execute()

        found = await host.scripts.read(read)
        n = len(keys)
        for i, tid in enumerate(unknown):
            hits = [k for k in range(n) if found[i * n + k]]
            if hits:
                out[tid] = hits[0]
                host.routes.remember_tasks([tid], hits[0])
    return out


async def host_for_task(host: Host, task_id: str) -> Part:
    """The partition holding ``task_id``.

    Raises
    ------
    NotFound
        With several partitions: no partition holds it (never submitted, or pruned).
    InvalidIdError
        Malformed id.
    """
    tid = check_id(task_id, "task id")
    if len(host.parts) == 1:
        return host
    k = (await locate_tasks(host, [tid]))[tid]
    if k is None:
        raise NotFound("NOT_FOUND", f"task {task_id}")
    return host.parts[k]


async def on_task(host: Host, task_id: str, fn: Callable[[Part], Awaitable[T]]) -> T:
    """``fn`` of the task's partition; a stale remembered route (the task was pruned and
    submitted again elsewhere) is looked up again once, as :func:`on_swarm`."""
    part = await host_for_task(host, task_id)
    try:
        return await fn(part)
    except NotFound:
        if host.routes.tasks.pop(task_id, None) is None:
            raise
        again = await host_for_task(host, task_id)
        if again is part:
            raise
        return await fn(again)


async def group_tasks(
    host: Host, task_ids: Iterable[str]
) -> tuple[dict[int, list[str]], list[str]]:
    """``task_ids`` by partition (ids in order), and those in no partition."""
    ids = list(dict.fromkeys(task_ids))
    where = await locate_tasks(host, ids)
    groups: dict[int, list[str]] = {}
    missing = []
    for tid in ids:
        k = where[tid]
        if k is None:
            missing.append(tid)
        else:
            groups.setdefault(k, []).append(tid)
    return groups, missing


# -- submissions -------------------------------------------------------------------------------
async def backlogs(host: Host) -> list[int]:
    """Ready, pending and assigned tasks of each partition (cached ``BACKLOG_TTL_S``; else
    read as :meth:`TaskStore.counts` reads them, for all partitions at once)."""
    cached = host.routes.fresh_backlog()
    if cached is not None:
        return cached
    async with host.routes.reading:
        return host.routes.fresh_backlog() or await _read_backlogs(host)


async def _read_backlogs(host: Host) -> list[int]:
    # ready, assigned and running have no status index (decision 61): the ready and parked
    # zsets, leases less running-by-worker (one pipeline, a second one when tasks are parked)
    keys = [p.keys for p in host.parts]
    counts = await host.scripts.read(lambda: task_ops.status_counts_of(host.client, keys))
    host.routes.set_backlog([sum(c[s] for s in BACKLOG_STATUSES) for c in counts])
    return host.routes.backlog or []


async def capabilities(host: Host) -> list[dict[str, int]]:
    """Per partition, how many placed swarms offer each capability (cached
    ``CAPABILITIES_TTL_S``)."""
    cached = host.routes.fresh_caps()
    if cached is not None:
        return cached
    async with host.routes.reading:
        cached = host.routes.fresh_caps()
        if cached is None:
            cached = await partition_capabilities(host.scripts, host.settings)
            host.routes.set_caps(cached)
        return cached


async def route_submission(host: Host, specs: Sequence[TaskSpec], given: Collection[str]) -> Part:
    """The one partition a batch of new tasks goes to (a DAG submitted together stays
    together: each partition's scripts see only its own tasks).

    ``given`` are the ids the caller chose: one that exists already keeps its partition (a
    repeated submission is idempotent there). Dependencies outside the batch fix the
    partition to theirs. Otherwise the partition whose placed swarms cover the batch's
    capabilities with the smallest backlog wins (all partitions when none covers them). New
    given ids are then reserved for that partition (:func:`reserve_task_routes`, 10 min): ids
    a concurrent submission reserved already take the batch to theirs.

    Raises
    ------
    CrossPartitionError
        The batch names existing tasks (dependencies, repeated ids) of different partitions,
        or ids reserved for them: dependencies across partitions are refused (decision 47).
        Nothing was submitted.
    """
    if len(host.parts) == 1:
        return host
    batch = {s.id for s in specs}
    deps = {d for s in specs for d in s.deps.split(",") if d and d not in batch}
    where = await locate_tasks(host, sorted(deps | (set(given) & batch)))
    fixed = {tid: k for tid, k in where.items() if k is not None}
    if len(set(fixed.values())) > 1:
        named = ", ".join(f"{tid} (partition {k})" for tid, k in sorted(fixed.items()))
        raise CrossPartitionError(
            f"tasks {sorted(batch)} would join {named}: dependencies across coordination "
            "partitions are refused (decision 47); submit the whole DAG to one partition"
        )
    if fixed:
        k = next(iter(fixed.values()))
    else:
        needed = {c for s in specs for c in s.caps.split(",") if c}
        k = host.routes.choose(needed, await capabilities(host), await backlogs(host))
    if new := sorted(tid for tid in set(given) & batch if tid not in fixed):
        # a concurrent submission of one of these ids may have routed it elsewhere: the ids
        # are reserved first, and the batch meets the reservation (decision 108)
        chosen = k
        k, clash = await reserve_task_routes(host.scripts, host.settings, new, k, fixed=bool(fixed))
        if k < 0:
            named = ", ".join(f"{tid} (partition {p})" for tid, p in sorted(clash.items()))
            at_deps = f" and its dependencies' partition {chosen}" if fixed else ""
            raise CrossPartitionError(
                f"tasks {sorted(batch)} would join {named}{at_deps}: ids reserved by concurrent "
                "submissions; one batch goes to one coordination partition (decision 47)"
            )
    # counted at once, so the next choice (concurrent submissions too) sees them
    host.routes.submitted(k, len(specs))
    return host.parts[k]


def submitted(host: Host, part: Part, task_ids: Collection[str]) -> None:
    """Remember that ``task_ids`` are in ``part`` now."""
    if len(host.parts) > 1:
        host.routes.remember_tasks(task_ids, part.keys.partition)
