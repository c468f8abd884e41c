"""One worker process serving swarms placed in several coordination partitions (decision 44).

Each partition has its own task store, registry and leader, so a :class:`Worker` serves the
swarms of one partition. :func:`run_workers` places the process's swarms, then runs one Worker
per partition that holds some of them, side by side in this event loop: each with its own
Redis client, agent processes and shared-memory pool (the node's pool split between them by
agents, so the process holds no more than one pool's worth), all stopped by the same event. A
Worker that fails stops the others cleanly before its failure is raised. With one partition
this is exactly the one Worker of before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import check_id
from multiswarm.partitions import place_swarms
from multiswarm.placement import POOL_BYTES, REGION_BYTES
from multiswarm.registry import SwarmSpec
from multiswarm.scripts import Scripts
from multiswarm.worker import Worker

log = logging.getLogger(__name__)


def partition_worker_id(base: str, partition: int, partitions: int) -> str:
    """The id of the Worker serving ``partition``: ``base`` itself with one partition, else
    ``<base>.p<partition>``, so each partition's worker record is distinct.

    Raises
    ------
    InvalidIdError
        The id is not ``[A-Za-z0-9_.-]{1,128}`` (``base`` too long for the suffix).
    """
    return check_id(base if partitions == 1 else f"{base}.p{partition}", "worker id")


def split_pool(pool_bytes: int, agents: Sequence[int]) -> list[int]:
    """The node's pool of ``pool_bytes`` split between workers of ``agents`` agents each, in
    whole :data:`REGION_BYTES` regions and at least one each: every agent keeps about the share
    it would have in one worker of all of them (an input that fits one fits the other)."""
    regions = max(1, pool_bytes // REGION_BYTES)
    total = max(1, sum(agents))
    return [max(1, regions * max(1, n) // total) * REGION_BYTES for n in agents]


def _capabilities(spec: SwarmSpec) -> list[str]:
    return [c for c in spec.caps.split(",") if c]


async def group_by_partition(
    settings: Settings, swarms: Sequence[SwarmSpec]
) -> dict[int, list[SwarmSpec]]:
    """Partition -> the specs placed there (placing new swarms: place_swarms.lua), in the
    given order; ``{0: all}`` without a Redis call when ``settings.partitions`` is 1 or there
    are no swarms (a worker of no swarms still runs, in partition 0).

    Raises
    ------
    RedisUnavailable
        Redis stayed unreachable for the reconnect window.
    """
    if settings.partitions == 1 or not swarms:
        return {0: list(swarms)}
    client = connect(settings)
    try:
        scripts = Scripts.for_settings(client, settings)
        where = await place_swarms(scripts, settings, [(s.id, _capabilities(s)) for s in swarms])
    finally:
        await client.aclose()
    groups: dict[int, list[SwarmSpec]] = {}
    for spec, k in zip(swarms, where, strict=True):
        groups.setdefault(k, []).append(spec)
    return dict(sorted(groups.items()))


async def run_workers(
    settings: Settings, swarms: Sequence[SwarmSpec], stop: asyncio.Event, **options: Any
) -> None:
    """Serve ``swarms`` until ``stop`` is set: one :class:`Worker` per partition holding some.

    ``settings`` are the deployment's (agreed: ``settings.partitions`` is the deployment's P);
    ``options`` are Worker keyword arguments. ``worker_id`` is the id of the one Worker when P
    is 1, else the base of ``<id>.p<k>``; ``pool_bytes`` is the whole process's pool, split by
    agents; ``external`` commands go to the Worker hosting their swarm (commands of swarms not
    hosted here to the first Worker, as one Worker would run them).

    Raises
    ------
    WorkerFailed
        One Worker's loop raised; every Worker handed back its tasks and left first. The first
        failure is raised, later ones are logged.
    InvalidIdError
        ``worker_id`` too long for its partition suffix.
    RedisUnavailable
        Placing the swarms found Redis unreachable for the reconnect window.
    """
    if settings.partitions == 1:
        await Worker(settings, swarms, **options).run(stop)
        return
    groups = await group_by_partition(settings, swarms)
    base = options.pop("worker_id", None) or (
        f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )
    pools = split_pool(
        options.pop("pool_bytes", POOL_BYTES),
        [sum(s.max_agents for s in specs) for specs in groups.values()],
    )
    external: Mapping[str, str] = options.pop("external", None) or {}
    ids = {k: partition_worker_id(base, k, settings.partitions) for k in groups}
    workers: list[Worker] = []
    try:
        for n, ((k, specs), pool) in enumerate(zip(groups.items(), pools, strict=True)):
            hosted = {s.id for s in specs}
            mine = {
                sid: cmd
                for sid, cmd in external.items()
                if sid in hosted or (n == 0 and sid not in {s.id for s in swarms})
            }
            workers.append(
                Worker(
                    settings,
                    specs,
                    worker_id=ids[k],
                    partition=k,
                    pool_bytes=pool,
                    external=mine,
                    **options,
                )
            )
    except BaseException:
        for w in workers:  # none runs yet: only their clients are open
            await w.client.aclose()
        raise
    log.info(
        "worker %s serves partitions %s as %s",
        base,
        list(groups),
        [w.id for w in workers],
    )
    await _run_together(workers, stop)


async def _run_together(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    """Run ``workers`` until ``stop`` is set or one of them ends (fails); then stop them all and
    wait for each to have left; raise the first failure."""
    together = asyncio.Event()
    runs = [asyncio.create_task(w.run(together), name=f"worker {w.id}") for w in workers]
    stopped = asyncio.create_task(stop.wait())
    first: set[asyncio.Task[Any]] = set()
    try:
        first, _ = await asyncio.wait([*runs, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        together.set()
        stopped.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopped
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
    # the failure that stopped the others first, then any raised while they left
    order = sorted(range(len(runs)), key=lambda i: runs[i] not in first)
    failures = [e for i in order if isinstance(e := outcomes[i], BaseException)]
    for extra in failures[1:]:
        log.error("another worker of this process failed too: %s", extra)
    if failures:
        raise failures[0]
