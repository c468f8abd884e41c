"""``multiswarm-cli tasks``: submit, cancel, retry and purge tasks, over the facade (``list``
and ``show`` are in :mod:`multiswarm.cli_tasks_view`).

A task id may be given as a unique prefix of it (``tasks cancel 3f2a``), as ``tasks list``
prints ids in full.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from multiswarm import Multiswarm
from multiswarm.api_types import MAX_ATTEMPTS, PRIORITIES, TaskOptions
from multiswarm.cli_common import call, emit, loads, usage_failure

#: Largest ``--older-than`` of ``tasks purge``, in seconds (10 years: no finished task is older).
MAX_AGE_S = 10 * 365 * 86400.0


# -- tasks -------------------------------------------------------------------------------------
@click.group()
def tasks() -> None:
    """Submit, inspect, cancel, retry and purge tasks."""


def read_payload(text: str) -> Any:
    """The ``--payload`` value: JSON given inline, ``@FILE`` (JSON read from FILE) or ``-``
    (JSON read from stdin).

    Raises
    ------
    click.ClickException
        Exit 2, one line naming ``--payload``: unreadable file, not JSON (``NaN`` and
        ``Infinity`` are not: :func:`~multiswarm.cli_common.loads`).
    """
    source = "stdin" if text == "-" else text[1:] if text.startswith("@") else ""
    try:
        if text == "-":
            text = sys.stdin.read()
        elif source:
            with open(source, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise usage_failure(f"--payload: cannot read {source}: {e}") from e
    try:
        return loads(text)
    except ValueError as e:
        where = f" (read from {source})" if source else ""
        raise usage_failure(f"--payload is not JSON{where}: {e}") from e


_ms = click.IntRange(min=1)


@tasks.command("submit")
@click.argument("handler")
@click.option("--id", "task_id", default=None, help="Task id [default: a random hex id].")
@click.option(
    "--payload",
    default="null",
    metavar="JSON|@FILE|-",
    help="JSON payload inline, from FILE (@FILE) or from stdin (-); at most 1 MiB once "
    "encoded [default: null].",
)
@click.option("--cap", "caps", multiple=True, help="Required capability (repeatable).")
@click.option("--priority", type=click.Choice(list(PRIORITIES)), default="normal")
@click.option(
    "--after",
    "deps",
    multiple=True,
    help="Task id (or unique prefix) this one depends on (repeatable).",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, MAX_ATTEMPTS),
    default=3,
    show_default=True,
    help="Executions before the task ends dead.",
)
@click.option(
    "--lease-ms",
    type=_ms,
    default=None,
    help="Visibility timeout: a running task whose worker stops renewing is handed back after "
    "it (at least 1000) [default: the deployment's task lease].",
)
@click.option(
    "--timeout-ms", type=_ms, default=300_000, show_default=True, help="Longest execution."
)
@click.option(
    "--backoff-ms",
    type=click.IntRange(min=0),
    default=1_000,
    show_default=True,
    help="Retry delay, doubled per attempt.",
)
@click.option(
    "--backoff-max-ms", type=_ms, default=60_000, show_default=True, help="Longest retry delay."
)
@click.option(
    "--result-ttl-ms",
    type=_ms,
    default=None,
    help="How long the finished task and its result are kept [default: the deployment's].",
)
@click.pass_context
def tasks_submit(
    ctx: click.Context,
    /,
    handler: str,
    task_id: str | None,
    payload: str,
    caps: tuple[str, ...],
    priority: str,
    deps: tuple[str, ...],
    **limits: int | None,
) -> None:
    """Submit one task running HANDLER (package.module:function)."""
    data = read_payload(payload)

    async def submit(ms: Multiswarm) -> Any:
        options = TaskOptions(
            id=task_id,
            capabilities=list(caps),
            priority=priority,
            depends_on=[await ms.resolve_task_id(d) for d in deps],
            **limits,  # type: ignore[arg-type]  # click gives each its declared type
        )
        return await ms.submit_task(handler, data, options)

    receipt = call(ctx, submit)
    emit(ctx, receipt, f"{receipt.id} {receipt.status}")


@tasks.command("cancel")
@click.argument("task_id", metavar="ID")
@click.option("--reason", default="cancelled by operator", show_default=True)
@click.pass_context
def tasks_cancel(ctx: click.Context, task_id: str, reason: str) -> None:
    """Cancel task ID (or unique prefix); a running handler is stopped, dependents end
    cancelled too. A task that had already ended is left as it is: exit 1."""

    async def cancel(ms: Multiswarm) -> tuple[str, str]:
        tid = await ms.resolve_task_id(task_id)
        return tid, await ms.cancel_task(tid, reason)

    tid, out = call(ctx, cancel)
    if out.startswith("ended:"):  # nothing changed (the HTTP API's 409)
        raise click.ClickException(f"task {tid} had already ended ({out[6:]}); not cancelled")
    emit(ctx, {"id": tid, "outcome": out}, f"{tid} {out}")


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

    async def retry(ms: Multiswarm) -> dict[str, str]:
        ids = [await ms.resolve_task_id(t) for t in task_ids]
        return await ms.retry_tasks(ids, status=status_, limit=n)

    out = call(ctx, retry)
    retried = sum(1 for v in out.values() if v == "retried")
    emit(
        ctx,
        out,
        lambda: click.echo(
            "\n".join(f"{tid} {outcome}" for tid, outcome in out.items())
            + f"\n{retried} of {len(out)} retried"
        ),
    )
    if retried < len(out):  # (a script can tell: one named was not found, or had not ended)
        ctx.exit(1)


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
    type=click.FloatRange(min=0, max=MAX_AGE_S),
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
