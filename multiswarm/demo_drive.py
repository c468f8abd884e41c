"""The demo's driver: submit the DAGs, watch progress, inject faults, read the outcome.

With several coordination partitions (decision 44) the demo submits one DAG per partition
(:func:`multiswarm.demo.build_tasks`), reads counts, completions and leaders of every
partition, and merges the partitions' top results itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import Any

import msgspec

from multiswarm import demo_tasks
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import current_leader
from multiswarm.errors import MultiswarmError
from multiswarm.launcher import ProcessGroup
from multiswarm.local_system import spawn_worker
from multiswarm.messages import LeaderInfo, TaskSpec
from multiswarm.partition_views import sum_counts
from multiswarm.partitions import partition_keys
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore

Batch = tuple[list[tuple[TaskSpec, Any]], str]


class DemoOptions(msgspec.Struct, kw_only=True):
    corpus: str | None = None
    swarms: int = 3
    workers: int = 2
    agents: int = 2
    lease_ms: int = 3000
    kill_leader: bool = False
    kill_worker: bool = False
    group_size: int = 50
    timeout_s: float = 900.0
    progress: bool = True
    #: Keep the role processes' log files when the run verifies (a failed run always keeps them).
    keep_logs: bool = False
    api_port: int | None = None


class Parts:
    """The task store and registry of every partition (index = partition)."""

    def __init__(self, scripts: Scripts, settings: Settings) -> None:
        self.scripts = scripts
        self.keys = partition_keys(settings)
        self.stores = [TaskStore(scripts, k) for k in self.keys]
        self.registries = [SwarmRegistry(scripts, k) for k in self.keys]

    async def counts(self) -> dict[str, int]:
        return sum_counts(await asyncio.gather(*(s.counts() for s in self.stores)))

    async def stats(self) -> dict[str, int]:
        return sum_counts(await asyncio.gather(*(s.stats() for s in self.stores)))

    async def leaders(self) -> list[LeaderInfo | None]:
        return [(await current_leader(self.scripts, k))[0] for k in self.keys]

    async def active_swarms(self) -> int:
        found = await asyncio.gather(*(r.swarm_ids("active") for r in self.registries))
        return sum(len(ids) for ids in found)

    async def completed_ids(self) -> list[Any]:
        recorded: list[Any] = []
        for k in self.keys:
            entries = await self.scripts.client.xrange(k.completions, "-", "+")
            recorded += [(fields or {}).get(b"task") for _, fields in entries or []]
        return recorded


async def _led(parts: Parts, killed: str | None) -> bool:
    """Every partition has a leader other than ``killed``: the killed coordinator may have led
    more partitions than partition 0, and each fails over once its lease runs out."""
    return all(info is not None and info.holder != killed for info in await parts.leaders())


async def _wait_ready(parts: Parts, swarms: int, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(await parts.leaders()) and await parts.active_swarms() >= swarms:
            return
        await asyncio.sleep(0.1)
    raise MultiswarmError(
        "the system did not come up (no leader or swarms not active); see the logs"
    )


async def drive(
    settings: Settings, opts: DemoOptions, group: ProcessGroup, batches: list[Batch]
) -> dict[str, Any]:
    """Submit ``batches`` (batch ``k`` into partition ``k``), watch them to the end and report."""
    client = connect(settings)
    parts = Parts(Scripts(client), settings)
    try:
        await _wait_ready(parts, opts.swarms)
        first = await parts.leaders()
        started = time.monotonic()
        for store, (tasks, _) in zip(parts.stores, batches, strict=True):
            await store.submit(tasks)
        tops = [(store, top) for store, (_, top) in zip(parts.stores, batches, strict=True)]
        total = sum(len(tasks) for tasks, _ in batches)
        events = await _watch(opts, group, parts, total, tops, started)
        wall = time.monotonic() - started
        last = await parts.leaders()
        epochs = [int(await client.get(k.epoch) or 0) for k in parts.keys]
        stats, counts = await parts.stats(), await parts.counts()
        recorded = await parts.completed_ids()
        result = None
        with contextlib.suppress(MultiswarmError):
            results = [await store.result(top) for store, top in tops]
            result = (
                results[0] if len(results) == 1 else demo_tasks.summarize(demo_tasks.merge(results))
            )
        return {
            "tasks_submitted": stats.get("submitted", 0),
            "tasks_completed": counts["completed"],
            "tasks_lost": stats.get("submitted", 0) - counts["completed"],
            "duplicate_completions": len(recorded) - len(set(recorded)),
            "duplicate_results_refused": stats.get("duplicate_results", 0),
            "executions": stats.get("executions", 0),
            "retries": stats.get("retries", 0),
            "dead": counts["dead"],
            "cancelled": counts["cancelled"],
            "failovers": sum(e - f.epoch for e, f in zip(epochs, first, strict=True) if f),
            "failover_seconds": events.get("failover_seconds"),
            "leader_killed": events.get("leader_killed"),
            "worker_killed": events.get("worker_killed"),
            "leader_at_end": last[0].holder if last[0] else None,
            "partitions": len(parts.keys),
            "leaders_at_end": [info.holder if info else None for info in last],
            "wall_seconds": round(wall, 3),
            "tasks_per_second": round(counts["completed"] / wall, 1) if wall else 0.0,
            "swarms": opts.swarms,
            "workers": opts.workers,
            "agents_per_swarm": opts.agents,
            "lease_ms": opts.lease_ms,
            "result": result,
        }
    finally:
        await client.aclose()


async def _ended(tops: list[tuple[TaskStore, str]]) -> bool:
    for store, top in tops:
        task = (await store.get_many([top]))[0]
        if task is None or task.status not in ("completed", "dead", "cancelled"):
            return False
    return True


async def _watch(
    opts: DemoOptions,
    group: ProcessGroup,
    parts: Parts,
    total: int,
    tops: list[tuple[TaskStore, str]],
    started: float,
) -> dict[str, Any]:
    """Poll progress until every top task ends; inject the requested faults on the way. The
    leader killed is partition 0's."""
    events: dict[str, Any] = {}
    kill_at: float | None = None
    killed_holder = None
    progress = None
    if opts.progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        )
        progress.start()
        bar = progress.add_task("tasks", total=total)
    control = parts.keys[0]
    try:
        while time.monotonic() - started < opts.timeout_s:
            counts = await parts.counts()
            done = counts["completed"] + counts["dead"] + counts["cancelled"]
            if progress is not None:
                progress.update(
                    bar, completed=done, description=f"tasks (running {counts['running']})"
                )
            if opts.kill_leader and "leader_killed" not in events and counts["completed"] > 0:
                info, _ = await current_leader(parts.scripts, control)
                victim = next(
                    (c for c in group.children if info and c.pid == info.pid and c.alive()), None
                )
                if victim is not None and info is not None:
                    group.kill(victim)
                    kill_at, killed_holder = time.time(), info.holder
                    events["leader_killed"] = {"name": victim.name, "pid": victim.pid}
            if kill_at is not None and "failover_seconds" not in events:
                info, _ = await current_leader(parts.scripts, control)
                if info is not None and info.holder != killed_holder:
                    events["failover_seconds"] = round(info.acquired_ms / 1000 - kill_at, 3)
            if (
                opts.kill_worker
                and "worker_killed" not in events
                and counts["completed"] >= 0.3 * total
            ):
                victim = next(c for c in group.children if c.name == "worker-0")
                group.kill(victim)
                events["worker_killed"] = {"name": victim.name, "pid": victim.pid}
                spawn_worker(
                    group, 0, opts.workers, opts.swarms, opts.agents, "worker-0-replacement"
                )
            if (
                await _ended(tops)
                and (
                    not opts.kill_leader
                    or ("failover_seconds" in events and await _led(parts, killed_holder))
                )
                and (not opts.kill_worker or await _replacement_up(parts))
            ):
                break
            await asyncio.sleep(0.2)
    finally:
        if progress is not None:
            progress.stop()
    return events


async def _replacement_up(parts: Parts) -> bool:
    """The replacement worker has registered in some partition (so stopping the run stops it
    cleanly)."""
    for k in parts.keys:
        ids = await parts.scripts.read(partial(parts.scripts.client.hkeys, k.workers))
        if any(b"worker-0-replacement" in (i if isinstance(i, bytes) else i.encode()) for i in ids):
            return True
    return False


async def cleanup(settings: Settings) -> None:
    """Delete the demo namespace's keys in every partition (all are named in
    multiswarm/keys.py; no KEYS/SCAN)."""
    client = connect(settings)
    try:
        for keys in partition_keys(settings):
            members = await client.smembers(keys.index)
            ids = [m.decode() if isinstance(m, bytes) else m for m in members]
            capsets = [
                c.decode() if isinstance(c, bytes) else c
                for c in await client.hkeys(keys.parked_index)
            ]
            names = [
                *keys.task_keyset,
                keys.index,
                *keys.swarm_status_all,
                keys.archive,
                keys.archive_records,
                keys.leader,
                keys.rr_cursor,
                keys.parked_index,
                *[keys.parked(c) for c in capsets],
                *[keys.queue(s) for s in ids],
            ]
            if keys.partition == 0 and keys.partitions > 1:
                names += [keys.swarm_partitions, keys.partition_caps, keys.coordinators]
                names += keys.task_routes
            await client.delete(*names)
            for s in ids:  # per-swarm keys live in their own slots: one DEL each
                await client.delete(keys.state(s), keys.snapshots(s))
    finally:
        await client.aclose()
