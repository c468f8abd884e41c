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

from multiswarm import demo_tasks
from multiswarm.config import Settings
from multiswarm.demo_drive import DemoOptions, cleanup, drive
from multiswarm.errors import MultiswarmError
from multiswarm.local_system import api_answers, ensure_redis, signals_held, start_system
from multiswarm.messages import TaskSpec
from multiswarm.tasks import task_spec
from multiswarm.urls import redact

__all__ = ["DemoOptions", "build_tasks", "corpus_files", "print_report", "run_demo"]

Echo = Callable[[str], None]

#: Folders of installed packages, skipped below the corpus root (not above it).
_INSTALLED = frozenset({"site-packages", "dist-packages"})


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


def build_tasks(
    files: list[Path], group_size: int, shards: int = 1
) -> list[tuple[list[tuple[TaskSpec, Any]], str]]:
    """The demo's DAGs, dependencies first, one per shard: ``(tasks, top id)`` each.

    One shard: map tasks, a reduce per group of files, and the final reduce (its result is the
    summary). Several shards (one per coordination partition, decision 44): the files are
    split over the shards, and each shard's top task merges its groups (``reduce_group``); the
    driver merges the shards' results, since a dependency across partitions is refused.
    """
    run = uuid.uuid4().hex[:8]
    out: list[tuple[list[tuple[TaskSpec, Any]], str]] = []
    indexed = list(enumerate(files))
    for s in range(shards):
        # files dealt round robin: the shards' sizes differ by at most one file
        mine = indexed[s::shards]
        batch: list[tuple[TaskSpec, Any]] = []
        gids: list[str] = []
        for g in range(0, len(mine), group_size):
            members: list[str] = []
            for i, path in mine[g : g + group_size]:
                for kind, cap in (("parse", "parse"), ("compress", "compress")):
                    spec = task_spec(
                        f"multiswarm.demo_tasks:{kind}_file",
                        id=f"{run}.{kind}.{i}",
                        capabilities=[cap],
                        lease_ms=5000,
                    )
                    batch.append((spec, {"path": str(path)}))
                    members.append(spec.id)
            gid = f"{run}.group.{g // group_size}" + (f".{s}" if shards > 1 else "")
            batch.append((_reduce("reduce_group", gid, members), {}))
            gids.append(gid)
        top = f"{run}.final" if shards == 1 else f"{run}.shard.{s}"
        kind = "reduce_final" if shards == 1 else "reduce_group"
        batch.append((_reduce(kind, top, gids, priority="high"), {}))
        out.append((batch, top))
    return out


def _reduce(kind: str, task_id: str, deps: list[str], priority: str = "normal") -> TaskSpec:
    return task_spec(
        f"multiswarm.demo_tasks:{kind}",
        id=task_id,
        capabilities=["reduce"],
        depends_on=deps,
        priority=priority,
        lease_ms=5000,
    )


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
        api = next((c for c in group.children if c.name == "api"), None)
        if api is not None and opts.api_port is not None:
            # announced once it answers (the demo may end before a slow start would)
            if api_answers(api, opts.api_port):
                url = f"http://127.0.0.1:{opts.api_port}/"
                echo(f"dashboard and API: {url} (log: {log_dir}/api.log)")
            else:
                echo(f"the API did not start (log: {log_dir}/api.log); the demo runs without it")
        try:
            batches = build_tasks(files, opts.group_size, settings.partitions)
            report = asyncio.run(drive(settings, opts, group, batches))
        finally:
            with signals_held():  # a signal now waits for the teardown's end
                codes = group.stop_all()
                with contextlib.suppress(MultiswarmError):
                    asyncio.run(cleanup(settings))
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
