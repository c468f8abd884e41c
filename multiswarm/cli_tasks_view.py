"""``multiswarm-cli tasks list|show``: what runs where, when it started, how long it ran; ``list
--watch`` keeps the table live. Registered on the ``tasks`` group by :mod:`multiswarm.cli`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from multiswarm import Multiswarm, Task
from multiswarm.api_types import TASK_STATUSES
from multiswarm.cli_common import ago, make_table, report, seconds, watch_option

if TYPE_CHECKING:
    from rich.console import RenderableType


def run_ms(t: Task, now_ms: int) -> int | None:
    """How long the task ran (finished) or has been running (running), in ms; None before it
    started. A task retried after a failure counts from its latest start."""
    if not t.started_ms:
        return None
    if t.status == "running":
        return max(0, now_ms - t.started_ms)
    if t.finished_ms >= t.started_ms:
        return t.finished_ms - t.started_ms
    return None


def task_dict(t: Task, now_ms: int) -> dict[str, Any]:
    """A task as ``tasks list|show --json`` print it: names instead of stored codes, times in
    epoch ms (0: not yet), its age and run time, the lease time left while running."""
    return {
        "id": t.id,
        "name": t.name,
        "handler": t.handler,
        "status": t.status,
        "capabilities": t.capabilities,
        "priority": t.priority,
        "swarm": t.swarm,
        "worker": t.worker,
        "agent": t.agent,
        "attempts": t.attempts,
        "max_attempts": t.max_attempts,
        "depends_on": t.dependencies,
        "waiting_on": t.deps_left,
        "created_ms": t.created_ms,
        "started_ms": t.started_ms,
        "finished_ms": t.finished_ms,
        "age_ms": max(0, now_ms - t.created_ms) if t.created_ms else None,
        "run_ms": run_ms(t, now_ms),
        "lease_ms_left": max(0, t.lease_until - now_ms) if t.status == "running" else None,
        # the latest report of its handler (TaskContext.progress); None before any
        "progress": t.progress if t.progress_ms else None,
        "progress_note": t.progress_note,
        "progress_ms": t.progress_ms,
        "reason": t.reason,
        "error": t.error,
    }


def duration(ms: int | None) -> str:
    """``0.4 s`` / ``12 s`` / ``5.0 min`` / ``2.5 h`` for a duration in ms; empty for none."""
    if ms is None:
        return ""
    s = ms / 1000
    if s < 10:
        return f"{s:.1f} s"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


#: Fields of :func:`task_dict` that are epoch times, and that are durations, in ms.
_TIMES = ("created_ms", "started_ms", "finished_ms", "progress_ms")
_DURATIONS = ("age_ms", "run_ms", "lease_ms_left")


def _readable(field: str, value: Any) -> Any:
    """``1795814543641 (12 s ago)`` for a time, ``2.1 s`` for a duration, else the value."""
    if field in _TIMES and value:
        return f"{value} ({ago(value)})"
    if field in _DURATIONS and value is not None:
        return duration(value)
    if field == "progress" and value is not None:
        return f"{value:.0%}"
    return value


def progress_text(r: dict[str, Any]) -> str:
    """``40% parsing part 2`` for a task's latest report; empty without one."""
    if r["progress"] is None:
        return ""
    return f"{r['progress']:.0%} {r['progress_note']}".strip()


@click.command("show")
@click.argument("task_id", metavar="ID")
@click.pass_context
def tasks_show(ctx: click.Context, task_id: str) -> None:
    """Task ID (or a unique prefix of it), with its result when completed."""

    async def render(ms: Multiswarm) -> tuple[dict[str, Any], Sequence[RenderableType | str]]:
        t = await ms.get_task(await ms.resolve_task_id(task_id))
        d = task_dict(t, int(time.time() * 1000))
        if t.status == "completed":
            d["result"] = await ms.get_result(t.id)
        return d, [f"{k:>14}: {_readable(k, v)}" for k, v in d.items()]

    report(ctx, render)


def task_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            r["id"],
            r["status"],
            r["swarm"],
            r["worker"],
            r["agent"],
            f"{r['attempts']}/{r['max_attempts']}",
            duration(r["age_ms"]),
            duration(r["run_ms"]),
            seconds(r["lease_ms_left"]),
            progress_text(r)[:40],
            (r["reason"] or r["error"])[:60],
        ]
        for r in rows
    ]


TASK_COLUMNS = [
    "id",
    "status",
    "swarm",
    "worker",
    "agent",
    "attempts",
    "age",
    "run time",
    "lease left",
    "progress",
    "reason",
]


@click.command("list")
@click.option("--status", "status_", default=None, type=click.Choice(TASK_STATUSES))
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@watch_option
@click.pass_context
def tasks_list(ctx: click.Context, status_: str | None, limit: int, watch_s: float | None) -> None:
    """Tasks, most recently changed first: what runs where, since when, lease time left."""

    async def render(
        ms: Multiswarm,
    ) -> tuple[list[dict[str, Any]], Sequence[RenderableType | str]]:
        now_ms = int(time.time() * 1000)
        rows = [task_dict(t, now_ms) for t in await ms.list_tasks(status_, limit)]
        return rows, [make_table(TASK_COLUMNS, task_rows(rows))]

    report(ctx, render, watch_s)
