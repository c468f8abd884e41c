"""``multiswarm-cli tasks``: submit, inspect, cancel, retry and purge tasks, over the facade."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from multiswarm import Multiswarm, Task
from multiswarm.api_types import PRIORITIES, TASK_STATUSES, TaskOptions
from multiswarm.cli_common import call, emit, seconds, table, usage_failure


# -- tasks -------------------------------------------------------------------------------------
@click.group()
def tasks() -> None:
    """Submit, inspect, cancel, retry and purge tasks."""


def task_dict(t: Task, now_ms: int) -> dict[str, Any]:
    """A task as ``tasks list|show --json`` print it: names instead of stored codes, the lease
    time left while running."""
    return {
        "id": t.id,
        "name": t.name,
        "handler": t.handler,
        "status": t.status,
        "capabilities": t.capabilities,
        "priority": t.priority,
        "swarm": t.swarm,
        "worker": t.worker,
        "attempts": t.attempts,
        "max_attempts": t.max_attempts,
        "depends_on": t.dependencies,
        "waiting_on": t.deps_left,
        "lease_ms_left": max(0, t.lease_until - now_ms) if t.status == "running" else None,
        "reason": t.reason,
        "error": t.error,
    }


@tasks.command("submit")
@click.argument("handler")
@click.option("--id", "task_id", default=None)
@click.option("--payload", default="null", help="JSON payload [default: null].")
@click.option("--cap", "caps", multiple=True, help="Required capability (repeatable).")
@click.option("--priority", type=click.Choice(list(PRIORITIES)), default="normal")
@click.option("--after", "deps", multiple=True, help="Task id this one depends on (repeatable).")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True)
@click.pass_context
def tasks_submit(
    ctx: click.Context,
    handler: str,
    task_id: str | None,
    payload: str,
    caps: tuple[str, ...],
    priority: str,
    deps: tuple[str, ...],
    max_attempts: int,
) -> None:
    """Submit one task running HANDLER (package.module:function)."""
    try:
        data = json.loads(payload)
    except ValueError as e:
        raise usage_failure(f"--payload is not JSON: {e}") from e
    options = TaskOptions(
        id=task_id,
        capabilities=list(caps),
        priority=priority,
        depends_on=list(deps),
        max_attempts=max_attempts,
    )
    receipt = call(ctx, lambda ms: ms.submit_task(handler, data, options))
    emit(ctx, receipt, f"{receipt.id} {receipt.status}")


@tasks.command("show")
@click.argument("task_id")
@click.pass_context
def tasks_show(ctx: click.Context, task_id: str) -> None:
    """One task, with its result when completed."""

    async def fetch(ms: Multiswarm) -> dict[str, Any]:
        t = await ms.get_task(task_id)
        d = task_dict(t, int(time.time() * 1000))
        if t.status == "completed":
            d["result"] = await ms.get_result(task_id)
        return d

    d = call(ctx, fetch)

    def text() -> None:
        for k, v in d.items():
            click.echo(f"{k:>14}: {v}")

    emit(ctx, d, text)


@tasks.command("cancel")
@click.argument("task_id")
@click.option("--reason", default="cancelled by operator", show_default=True)
@click.pass_context
def tasks_cancel(ctx: click.Context, task_id: str, reason: str) -> None:
    """Cancel a task (its dependents end cancelled too)."""
    out = call(ctx, lambda ms: ms.cancel_task(task_id, reason))
    emit(ctx, {"id": task_id, "outcome": out}, f"{task_id} {out}")


@tasks.command("list")
@click.option("--status", "status_", default=None, type=click.Choice(TASK_STATUSES))
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.pass_context
def tasks_list(ctx: click.Context, status_: str | None, limit: int) -> None:
    """Tasks, newest first: what is running where, with lease time left."""
    now_ms = int(time.time() * 1000)
    rows = [task_dict(t, now_ms) for t in call(ctx, lambda ms: ms.list_tasks(status_, limit))]
    emit(
        ctx,
        rows,
        lambda: table(
            ["id", "status", "swarm", "worker", "attempts", "lease left", "reason"],
            [
                [
                    r["id"],
                    r["status"],
                    r["swarm"],
                    r["worker"],
                    f"{r['attempts']}/{r['max_attempts']}",
                    seconds(r["lease_ms_left"]),
                    r["reason"] or r["error"][:60],
                ]
                for r in rows
            ],
        ),
    )


@tasks.command("retry")
@click.argument("task_ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--status",
    "status_",
    type=click.Choice(["dead", "cancelled"]),
    default=None,
    help="Retry tasks of this status (the newest --limit, or all with --all).",
)
@click.option("--all", "all_", is_flag=True, help="With --status: every such task.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.pass_context
def tasks_retry(
    ctx: click.Context, task_ids: tuple[str, ...], status_: str | None, all_: bool, limit: int
) -> None:
    """Run dead or cancelled tasks again, attempts counted from zero.

    A task whose dependency did not complete is refused (its input would be missing).
    """
    if not task_ids and status_ is None:
        raise usage_failure("name task ids, or --status dead|cancelled")
    if all_ and status_ is None:
        raise usage_failure("--all needs --status")
    n = 1_000_000 if all_ else limit
    out = call(ctx, lambda ms: ms.retry_tasks(task_ids, status=status_, limit=n))
    retried = sum(1 for v in out.values() if v == "retried")
    emit(
        ctx,
        out,
        lambda: click.echo(
            "\n".join(f"{tid} {outcome}" for tid, outcome in out.items())
            + f"\n{retried} of {len(out)} retried"
        ),
    )


@tasks.command("purge")
@click.option(
    "--status",
    "status_",
    type=click.Choice(["completed", "dead", "cancelled"]),
    required=True,
    help="Which finished tasks to forget.",
)
@click.option(
    "--older-than",
    "older_than_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Only tasks finished at least this many seconds ago.",
)
@click.pass_context
def tasks_purge(ctx: click.Context, status_: str, older_than_s: float) -> None:
    """Forget finished tasks (record, payload, result) before their retention ends.

    Completed tasks an unfinished task depends on are kept: it will read their result.
    """
    purged, held = call(ctx, lambda ms: ms.purge_tasks(status_, int(older_than_s * 1000)))
    line = f"{purged} {status_} tasks purged" + (
        f"; {len(held)} kept for unfinished dependents" if held else ""
    )
    emit(ctx, {"purged": purged, "held": list(held)}, line)
