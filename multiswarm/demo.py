"""``multiswarm-cli demo`` and ``up``: a whole local system in separate processes.

The demo submits two map tasks per source file (identifier counts: capability ``parse``; zlib
ratio: ``compress``), one reduce per group of files depending on them, and a final reduce
depending on the groups (``reduce``). Three or more swarms with different capabilities are spread
over two or more worker processes; two coordinators elect a leader with a short lease. Optional
faults: SIGKILL of the leader, SIGKILL of a worker (a replacement starts). The merged result is
compared with :func:`multiswarm.demo_tasks.reference` computed in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from multiswarm import demo_tasks
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import current_leader
from multiswarm.errors import MultiswarmError
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.local_system import ensure_redis, spawn_worker, start_system
from multiswarm.messages import TaskSpec
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from multiswarm.urls import redact

Echo = Callable[[str], None]

#: Folders of installed packages, skipped below the corpus root (not above it).
_INSTALLED = frozenset({"site-packages", "dist-packages"})


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


def corpus_files(corpus: str | None) -> tuple[Path, list[Path]]:
    """The demo's files: ``*.py`` under ``corpus`` (default: the standard library), sorted.

    Installed packages below the root (``site-packages``, ``dist-packages``) are left out. Only
    the path below the root is looked at: a corpus that itself lies inside a virtualenv or an
    installed package keeps its files.
    """
    root = Path(corpus) if corpus else Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if p.is_file() and not _INSTALLED.intersection(p.relative_to(root).parts)
    )
    if not files:
        raise MultiswarmError(f"no .py files under {root}")
    return root, files


def build_tasks(files: list[Path], group_size: int) -> tuple[list[tuple[TaskSpec, Any]], str]:
    """Map, group-reduce and final-reduce tasks, dependencies first; returns (tasks, final id)."""
    run = uuid.uuid4().hex[:8]
    out: list[tuple[TaskSpec, Any]] = []
    groups: list[str] = []
    for g in range(0, len(files), group_size):
        members: list[str] = []
        for i, path in enumerate(files[g : g + group_size], start=g):
            for kind, cap in (("parse", "parse"), ("compress", "compress")):
                spec = task_spec(
                    f"multiswarm.demo_tasks:{kind}_file",
                    id=f"{run}.{kind}.{i}",
                    capabilities=[cap],
                    lease_ms=5000,
                )
                out.append((spec, {"path": str(path)}))
                members.append(spec.id)
        gid = f"{run}.group.{g // group_size}"
        out.append(
            (
                task_spec(
                    "multiswarm.demo_tasks:reduce_group",
                    id=gid,
                    capabilities=["reduce"],
                    depends_on=members,
                    lease_ms=5000,
                ),
                {},
            )
        )
        groups.append(gid)
    final = f"{run}.final"
    out.append(
        (
            task_spec(
                "multiswarm.demo_tasks:reduce_final",
                id=final,
                capabilities=["reduce"],
                depends_on=groups,
                priority="high",
                lease_ms=5000,
            ),
            {},
        )
    )
    return out, final


def run_demo(settings: Settings, opts: DemoOptions, echo: Echo) -> dict[str, Any]:
    """Run the demo end to end; returns the report (see ``multiswarm-cli demo --help``)."""
    root, files = corpus_files(opts.corpus)
    namespace = (
        settings.namespace if settings.namespace != "swarm" else f"demo-{uuid.uuid4().hex[:6]}"
    )
    settings = settings.replace(
        namespace=namespace, lease_ms=opts.lease_ms, heartbeat_timeout_ms=3000, task_lease_ms=5000
    )
    log_dir = Path(tempfile.mkdtemp(prefix="multiswarm-demo-"))
    echo(f"corpus: {len(files)} files under {root}; logs in {log_dir}")
    verified = False
    try:
        report = _run(settings, opts, echo, root, files, log_dir)
        verified = bool(report["verified"])
    finally:
        # kept for whoever must read why a run failed (or asked to keep them), else removed:
        # every run used to leave a directory behind
        if verified and not opts.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            echo(f"logs kept in {log_dir}")
    report["logs"] = str(log_dir) if opts.keep_logs or not verified else None
    return report


def _run(
    settings: Settings,
    opts: DemoOptions,
    echo: Echo,
    root: Path,
    files: list[Path],
    log_dir: Path,
) -> dict[str, Any]:
    namespace = settings.namespace
    with ensure_redis(settings, echo) as settings:
        echo(
            "starting registry, 2 coordinators, state manager and workers (the first run also "
            "compiles the Numba kernels, ~15 s)"
        )
        group = start_system(
            settings,
            workers=opts.workers,
            swarms=opts.swarms,
            agents=opts.agents,
            strategy="capability",
            log_dir=log_dir,
            verbose=True,  # INFO lines: the logs of a failed run must say what happened
            corpus=root,
            api_port=opts.api_port,
        )
        if opts.api_port is not None:
            echo(f"dashboard and API: http://127.0.0.1:{opts.api_port}/ (log: {log_dir}/api.log)")
        try:
            report = asyncio.run(_drive(settings, opts, group, files))
        finally:
            codes = group.stop_all()
            with contextlib.suppress(MultiswarmError):
                asyncio.run(_cleanup(settings))
        report["exit_codes"] = codes
    started = time.perf_counter()
    expected = demo_tasks.reference(files)
    report["reference_seconds"] = round(time.perf_counter() - started, 3)
    report["result_matches_reference"] = report.pop("result", None) == expected
    report["summary"] = {
        k: expected[k]
        for k in ("files", "identifiers", "distinct", "top", "ratio", "tokenize_errors")
    }
    report["verified"] = bool(
        report["result_matches_reference"]
        and report["tasks_lost"] == 0
        and report["duplicate_completions"] == 0
    )
    report.update(
        corpus=str(root),
        files=len(files),
        namespace=namespace,
        redis_url=redact(settings.redis_url),
    )
    return report


async def _wait_ready(
    store: TaskStore,
    registry: SwarmRegistry,
    scripts: Scripts,
    keys: Keys,
    swarms: int,
    timeout_s: float = 180.0,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info, _ = await current_leader(scripts, keys)
        if info is not None and len(await registry.swarm_ids("active")) >= swarms:
            return
        await asyncio.sleep(0.1)
    raise MultiswarmError(
        "the system did not come up (no leader or swarms not active); see the logs"
    )


async def _drive(
    settings: Settings, opts: DemoOptions, group: ProcessGroup, files: list[Path]
) -> dict[str, Any]:
    client = connect(settings)
    scripts, keys = Scripts(client), Keys(settings.namespace)
    store, registry = TaskStore(scripts, keys), SwarmRegistry(scripts, keys)
    try:
        await _wait_ready(store, registry, scripts, keys, opts.swarms)
        first, _ = await current_leader(scripts, keys)
        assert first is not None
        tasks, final_id = build_tasks(files, opts.group_size)
        started = time.monotonic()
        await store.submit(tasks)
        events = await _watch(opts, group, store, scripts, keys, len(tasks), final_id, started)
        wall = time.monotonic() - started
        last, _ = await current_leader(scripts, keys)
        epoch_now = int(await client.get(keys.epoch) or 0)
        stats, counts = await store.stats(), await store.counts()
        completions = await client.xrange(keys.completions, "-", "+")
        recorded = [(fields or {}).get(b"task") for _, fields in completions or []]
        result = None
        with contextlib.suppress(MultiswarmError):
            result = await store.result(final_id)
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
            "failovers": epoch_now - first.epoch,
            "failover_seconds": events.get("failover_seconds"),
            "leader_killed": events.get("leader_killed"),
            "worker_killed": events.get("worker_killed"),
            "leader_at_end": last.holder if last else None,
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


async def _watch(
    opts: DemoOptions,
    group: ProcessGroup,
    store: TaskStore,
    scripts: Scripts,
    keys: Keys,
    total: int,
    final_id: str,
    started: float,
) -> dict[str, Any]:
    """Poll progress until the final task ends; inject the requested faults on the way."""
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
    try:
        while time.monotonic() - started < opts.timeout_s:
            counts = await store.counts()
            done = counts["completed"] + counts["dead"] + counts["cancelled"]
            if progress is not None:
                progress.update(
                    bar, completed=done, description=f"tasks (running {counts['running']})"
                )
            if opts.kill_leader and "leader_killed" not in events and counts["completed"] > 0:
                info, _ = await current_leader(scripts, keys)
                victim = next(
                    (c for c in group.children if info and c.pid == info.pid and c.alive()), None
                )
                if victim is not None and info is not None:
                    group.kill(victim)
                    kill_at, killed_holder = time.time(), info.holder
                    events["leader_killed"] = {"name": victim.name, "pid": victim.pid}
            if kill_at is not None and "failover_seconds" not in events:
                info, _ = await current_leader(scripts, keys)
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
            task = (await store.get_many([final_id]))[0]
            if (
                task is not None
                and task.status in ("completed", "dead", "cancelled")
                and (not opts.kill_leader or "failover_seconds" in events)
                and (not opts.kill_worker or await _replacement_up(scripts, keys))
            ):
                break
            await asyncio.sleep(0.2)
    finally:
        if progress is not None:
            progress.stop()
    return events


async def _replacement_up(scripts: Scripts, keys: Keys) -> bool:
    """The replacement worker has registered (so stopping the run stops it cleanly)."""
    ids = await scripts.read(lambda: scripts.client.hkeys(keys.workers))
    return any(b"worker-0-replacement" in (i if isinstance(i, bytes) else i.encode()) for i in ids)


async def _cleanup(settings: Settings) -> None:
    """Delete the demo namespace's keys (all are named in multiswarm/keys.py; no KEYS/SCAN)."""
    client = connect(settings)
    keys = Keys(settings.namespace)
    try:
        ids = [m.decode() if isinstance(m, bytes) else m for m in await client.smembers(keys.index)]
        capsets = [
            c.decode() if isinstance(c, bytes) else c for c in await client.hkeys(keys.parked_index)
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
        await client.delete(*names)
        for s in ids:  # per-swarm keys live in their own slots: one DEL each
            await client.delete(keys.state(s), keys.snapshots(s))
    finally:
        await client.aclose()


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("measure", "value", title="multiswarm demo")
    for key in (
        "files",
        "tasks_submitted",
        "tasks_completed",
        "tasks_lost",
        "duplicate_completions",
        "executions",
        "retries",
        "failovers",
        "failover_seconds",
        "wall_seconds",
        "tasks_per_second",
        "reference_seconds",
        "verified",
    ):
        table.add_row(key, str(report.get(key)))
    s = report["summary"]
    table.add_row("identifiers", f"{s['identifiers']} ({s['distinct']} distinct)")
    table.add_row("top identifiers", ", ".join(f"{k} {v}" for k, v in s["top"][:5]))
    table.add_row("compressed/raw", str(s["ratio"]))
    Console().print(table)
