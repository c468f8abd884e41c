"""Operator commands for recovery: ``recover``, ``snapshot`` and ``checkpoint`` groups.

Registered on ``multiswarm-cli`` by :mod:`multiswarm.cli`; every command takes ``--json`` and
reads the connection settings from ``ctx.obj["settings"]``.

\b
  recover list                        interrupted swarms, best source, confidence
  recover plan SWARM                  dry run: what apply would do
  recover apply SWARM [--source ...] [--min-confidence X] [--yes]
  recover all [--min-confidence X] [--yes]
  recover quarantine SWARM | recover log SWARM
  snapshot create|list|restore        checkpoint create|list|restore
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from multiswarm.errors import MultiswarmError, NotInterrupted
from multiswarm.keys import Keys, check_id
from multiswarm.recovery import RecoveryOutcome, RecoveryPlan, SwarmRecovery
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from multiswarm.state_codec import SOURCE_KINDS

T = TypeVar("T")

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_source_option = click.option(
    "--source",
    type=click.Choice(SOURCE_KINDS),
    default=None,
    help="Recover from this source only [default: first valid of state, checkpoint, snapshot].",
)


def _run(ctx: click.Context, fn: Callable[[Scripts, Keys], Awaitable[T]]) -> T:
    # imported here: multiswarm.cli imports this module to register the groups
    from multiswarm.cli_common import run_async as run

    return run(ctx, fn)


def _emit(data: Any, as_json: bool, table: Callable[[], None]) -> None:
    from multiswarm.cli_common import emit

    emit(data, as_json, table)


def _manager(ctx: click.Context, scripts: Scripts, keys: Keys) -> SwarmStateManager:
    s = ctx.obj["settings"]
    return SwarmStateManager(scripts, keys, ttl_ms=s.state_ttl_ms, snapshots_kept=s.snapshots_kept)


def _recovery(ctx: click.Context, scripts: Scripts, keys: Keys) -> SwarmRecovery:
    return SwarmRecovery(_manager(ctx, scripts, keys), actor="operator")


def _ago(ms: int) -> str:
    if ms <= 0:
        return "-"
    s = max(0.0, time.time() - ms / 1000)
    return (
        f"{s:.0f} s ago"
        if s < 120
        else f"{s / 60:.0f} min ago"
        if s < 7200
        else f"{s / 3600:.1f} h ago"
    )


def _print_plan(plan: dict[str, Any]) -> None:
    ev = plan["evidence"]
    echo = click.echo
    echo(
        f"swarm {plan['swarm']} ({plan['status']} since {_ago(plan['interrupted_ms'])}), "
        f"plan {plan['plan_id']}" + (" [resume]" if plan["resume"] else "")
    )
    if plan["source"] == "none":
        echo("source: none valid (tasks are re-queued from the registry only)")
    else:
        echo(
            f"source: {plan['source']} {plan['source_id']} ({plan['source_label']}), "
            f"version {plan['source_version']}, captured {ev['age_ms'] / 1000:.1f} s before "
            "the interruption"
        )
    echo(
        f"confidence: {plan['confidence']:.2f} = 0.5 + 0.45 x kind {ev['kind']:.2f} x "
        f"freshness {ev['freshness']:.2f} x tasks {ev['tasks']:.2f} "
        f"({ev['tasks_complete']}/{ev['tasks_known']} complete) x agents {ev['agents']:.2f} "
        f"({ev['agents_recorded']}/{ev['agents_expected']})"
    )

    def ids(label: str, values: list[str]) -> None:
        shown = ", ".join(values[:10]) + (
            f", ... (+{len(values) - 10})" if len(values) > 10 else ""
        )
        echo(f"{label}: {len(values)}" + (f" ({shown})" if values else ""))

    ids("tasks to re-queue", plan["requeue"])
    ids("already completed", plan["completed"])
    ids("moved on (retrying, elsewhere, ended)", plan["elsewhere"])
    ids("incomplete definitions", plan["missing"])
    ids("agents to restart", plan["agents"])
    echo(f"estimated time: {plan['estimated_ms'] / 1000:.1f} s")
    for r in plan["rejected"]:
        echo(
            f"rejected {r['source']} {r['id'] or '?'}: {r['reason']}"
            + (" (quarantined)" if r["quarantined"] else "")
        )
    for a in plan["alternatives"]:
        echo(
            f"alternative: {a['source']} {a['id']} ({a['label']}) confidence {a['confidence']:.2f}"
        )


# -- recover ---------------------------------------------------------------------------------
@click.group()
def recover() -> None:
    """See, plan and apply the recovery of interrupted swarms."""


@recover.command("list")
@_json_option
@click.pass_context
def recover_list(ctx: click.Context, as_json: bool) -> None:
    """Interrupted swarms: best source, confidence, and whether auto-recovery would apply."""

    async def fetch(scripts: Scripts, keys: Keys) -> list[dict[str, Any]]:
        r = _recovery(ctx, scripts, keys)
        threshold = ctx.obj["settings"].auto_recover_min_confidence
        rows: list[dict[str, Any]] = []
        for sid, p in (await r.plan_many(await r.discover())).items():
            if isinstance(p, MultiswarmError):
                rows.append({"swarm": sid, "error": str(p)})
                continue
            rows.append(
                {
                    "swarm": sid,
                    "status": p.status,
                    "interrupted_ms": p.interrupted_ms,
                    "source": p.source,
                    "source_id": p.source_id,
                    "confidence": p.confidence,
                    "auto": p.confidence >= threshold,
                    "requeue": len(p.requeue),
                    "rejected": len(p.rejected),
                    "plan_id": p.plan_id,
                }
            )
        return rows

    rows = _run(ctx, fetch)

    def table() -> None:
        from rich.console import Console
        from rich.table import Table

        if not rows:
            click.echo("no interrupted swarms")
            return
        t = Table(
            "swarm", "status", "since", "source", "confidence", "auto", "re-queue", "rejected"
        )
        for r in rows:
            if "error" in r:
                t.add_row(r["swarm"], "error", "", r["error"], "", "", "", "")
                continue
            t.add_row(
                r["swarm"],
                r["status"],
                _ago(r["interrupted_ms"]),
                f"{r['source']} {r['source_id']}",
                f"{r['confidence']:.2f}",
                "yes" if r["auto"] else "no",
                str(r["requeue"]),
                str(r["rejected"]),
            )
        Console().print(t)

    _emit(rows, as_json, table)


@recover.command("plan")
@click.argument("swarm")
@_source_option
@_json_option
@click.pass_context
def recover_plan(ctx: click.Context, swarm: str, source: str | None, as_json: bool) -> None:
    """Dry run: what `recover apply SWARM` would do. Nothing is written (corrupted entries are
    reported, not moved)."""

    async def fetch(scripts: Scripts, keys: Keys) -> dict[str, Any]:
        try:
            plan = await _recovery(ctx, scripts, keys).plan(swarm, source=source)
        except NotInterrupted as e:
            return {"swarm": swarm, "plan": None, "detail": str(e)}
        return {"swarm": swarm, "plan": plan.to_dict(), "detail": ""}

    out = _run(ctx, fetch)
    _emit(
        out,
        as_json,
        lambda: (
            click.echo(f"nothing to recover: {out['detail']}")
            if out["plan"] is None
            else _print_plan(out["plan"])
        ),
    )


@recover.command("apply")
@click.argument("swarm")
@_source_option
@click.option(
    "--min-confidence",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Refuse (exit 1) when the plan's confidence is lower.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.pass_context
def recover_apply(
    ctx: click.Context,
    swarm: str,
    source: str | None,
    min_confidence: float | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Recover SWARM: re-queue its in-flight tasks once and move it interrupted -> recovering ->
    active. Applying again does nothing. Corrupted sources are quarantined on the way."""

    async def make(scripts: Scripts, keys: Keys) -> RecoveryPlan | None:
        try:
            return await _recovery(ctx, scripts, keys).plan(swarm, source=source, quarantine=True)
        except NotInterrupted:
            return None

    plan = _run(ctx, make)
    if plan is None:
        out = {
            "swarm": swarm,
            "outcome": "not_interrupted",
            "plan": None,
            "detail": "nothing to recover (already recovered, or never interrupted)",
        }
        _emit(out, as_json, lambda: click.echo(f"{swarm}: {out['detail']}"))
        return
    if not as_json:
        _print_plan(plan.to_dict())
    if min_confidence is not None and plan.confidence < min_confidence and not plan.resume:
        raise click.ClickException(
            f"confidence {plan.confidence:.2f} is below "
            f"--min-confidence {min_confidence:.2f}; nothing applied"
        )
    if not yes:
        click.confirm(f"apply plan {plan.plan_id}?", abort=True, err=True)

    async def apply(scripts: Scripts, keys: Keys) -> RecoveryOutcome:
        return await _recovery(ctx, scripts, keys).apply(plan, min_confidence)

    outcome = _run(ctx, apply)
    result = {**outcome.to_dict(), "plan": plan.to_dict()}
    _emit(
        result,
        as_json,
        lambda: click.echo(
            f"{swarm}: {outcome.outcome}; {len(outcome.requeued)} tasks re-queued"
            + (f" ({outcome.detail})" if outcome.detail else "")
        ),
    )
    if outcome.outcome in ("stale_plan", "error"):
        ctx.exit(1)


@recover.command("all")
@click.option(
    "--min-confidence",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Apply plans at or above this [default: the auto-recovery threshold, 0.75].",
)
@_source_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.pass_context
def recover_all(
    ctx: click.Context, min_confidence: float | None, source: str | None, yes: bool, as_json: bool
) -> None:
    """Recover every interrupted swarm whose plan reaches the minimum confidence; list the
    rest for a closer look (`recover plan`)."""

    async def make(
        scripts: Scripts, keys: Keys
    ) -> tuple[list[RecoveryPlan], list[dict[str, Any]], float]:
        r = _recovery(ctx, scripts, keys)
        floor = (
            ctx.obj["settings"].auto_recover_min_confidence
            if min_confidence is None
            else min_confidence
        )
        plans = await r.plan_many(await r.discover(), source=source, quarantine=True)
        go: list[RecoveryPlan] = []
        skipped: list[dict[str, Any]] = []
        for sid, p in plans.items():
            if isinstance(p, MultiswarmError):
                skipped.append({"swarm": sid, "reason": str(p)})
            elif p.resume or p.confidence >= floor:
                go.append(p)
            else:
                skipped.append(
                    {
                        "swarm": sid,
                        "reason": f"confidence {p.confidence:.2f} < {floor:.2f}",
                        "confidence": p.confidence,
                        "source": p.source,
                    }
                )
        return go, skipped, floor

    go, skipped, floor = _run(ctx, make)
    if not as_json:
        click.echo(f"{len(go)} swarms at or above confidence {floor:.2f}; {len(skipped)} left")
    if go and not yes:
        click.confirm(f"recover {len(go)} swarms?", abort=True, err=True)

    async def apply(scripts: Scripts, keys: Keys) -> list[RecoveryOutcome]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        r = _recovery(ctx, scripts, keys)
        outcomes: list[RecoveryOutcome] = []
        with Progress(
            "recovering",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=as_json,
        ) as progress:
            bar = progress.add_task("recover", total=len(go))
            for start in range(0, len(go), 50):
                chunk = go[start : start + 50]
                outcomes += await r.apply_many(chunk)
                progress.advance(bar, len(chunk))
        return outcomes

    outcomes = _run(ctx, apply) if go else []
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    report = {
        "min_confidence": floor,
        "outcomes": [o.to_dict() for o in outcomes],
        "counts": counts,
        "skipped": skipped,
    }

    def text() -> None:
        for o in outcomes:
            click.echo(
                f"{o.swarm}: {o.outcome} from {o.source} ({o.confidence:.2f}), "
                f"{len(o.requeued)} tasks re-queued"
            )
        for s in skipped:
            click.echo(f"{s['swarm']}: left ({s['reason']})")

    _emit(report, as_json, text)
    if any(o.outcome == "error" for o in outcomes):
        ctx.exit(1)


@recover.command("quarantine")
@click.argument("swarm")
@_json_option
@click.pass_context
def recover_quarantine(ctx: click.Context, swarm: str, as_json: bool) -> None:
    """Entries of SWARM moved to quarantine, with the reason (newest first)."""
    rows = _run(ctx, lambda s, k: _manager(ctx, s, k).list_quarantine(swarm))

    def text() -> None:
        for r in rows:
            click.echo(f"{r['kind']} {r['id'] or '?'} {_ago(r['at_ms'] or 0)}: {r['reason']}")
        if not rows:
            click.echo("nothing quarantined")

    _emit(rows, as_json, text)


@recover.command("log")
@click.argument("swarm")
@_json_option
@click.pass_context
def recover_log(ctx: click.Context, swarm: str, as_json: bool) -> None:
    """What each recovery of SWARM did (newest first)."""
    rows = _run(ctx, lambda s, k: _recovery(ctx, s, k).log(swarm))

    def text() -> None:
        for r in rows:
            click.echo(
                f"{r.get('plan')} {_ago(r.get('at_ms', 0))} by {r.get('by')}: from "
                f"{r.get('source')} ({r.get('confidence')}), "
                f"{len(r.get('requeued', []))} re-queued"
            )
        if not rows:
            click.echo("no recoveries")

    _emit(rows, as_json, text)


# -- snapshots and checkpoints ---------------------------------------------------------------
def _points_table(rows: list[dict[str, Any]], what: str) -> Callable[[], None]:
    def table() -> None:
        from rich.console import Console
        from rich.table import Table

        if not rows:
            click.echo(f"no {what}s")
            return
        t = Table(
            "id",
            "label" if what == "snapshot" else "name",
            "version",
            "taken",
            "bytes",
            "integrity",
        )
        for r in rows:
            t.add_row(
                r["id"],
                r["label"],
                str(r["version"]),
                _ago(r["taken_ms"]),
                str(r["bytes"]),
                r["integrity"],
            )
        Console().print(t)

    return table


@click.group()
def snapshot() -> None:
    """Snapshots of a swarm's state (automatic every SNAPSHOT_INTERVAL; 10 kept)."""


@snapshot.command("create")
@click.argument("swarm")
@click.option("--label", default="manual", show_default=True)
@_json_option
@click.pass_context
def snapshot_create(ctx: click.Context, swarm: str, label: str, as_json: bool) -> None:
    """Copy SWARM's current state into its snapshots (the oldest beyond 10 is dropped)."""
    version = _run(ctx, lambda s, k: _manager(ctx, s, k).create_snapshot(swarm, label))
    if version == 0:
        raise click.ClickException(f"{swarm} has no state to snapshot")
    _emit(
        {"swarm": swarm, "version": version, "label": label},
        as_json,
        lambda: click.echo(f"snapshot of {swarm} at version {version}"),
    )


@snapshot.command("list")
@click.argument("swarm")
@_json_option
@click.pass_context
def snapshot_list(ctx: click.Context, swarm: str, as_json: bool) -> None:
    """SWARM's snapshots, newest first, each verified."""
    rows = _run(ctx, lambda s, k: _manager(ctx, s, k).list_snapshots(swarm))
    _emit(rows, as_json, _points_table(rows, "snapshot"))


@snapshot.command("restore")
@click.argument("swarm")
@click.argument("snapshot_id", required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.pass_context
def snapshot_restore(
    ctx: click.Context, swarm: str, snapshot_id: str | None, yes: bool, as_json: bool
) -> None:
    """Make a snapshot (default: the newest) SWARM's current state."""
    if not yes:
        click.confirm(
            f"replace the state of {swarm} with snapshot {snapshot_id or '(newest)'}?",
            abort=True,
            err=True,
        )
    version = _run(ctx, lambda s, k: _manager(ctx, s, k).restore_snapshot(swarm, snapshot_id))
    _emit(
        {"swarm": swarm, "snapshot": snapshot_id, "version": version},
        as_json,
        lambda: click.echo(f"{swarm} restored; state version {version}"),
    )


@click.group()
def checkpoint() -> None:
    """Named manual recovery points of a swarm's state (10 kept)."""


@checkpoint.command("create")
@click.argument("swarm")
@click.argument("name")
@_json_option
@click.pass_context
def checkpoint_create(ctx: click.Context, swarm: str, name: str, as_json: bool) -> None:
    """Copy SWARM's current state as checkpoint NAME (replacing an older one of that name)."""
    try:
        check_id(name, "checkpoint name")
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="NAME") from e
    version = _run(ctx, lambda s, k: _manager(ctx, s, k).create_checkpoint(swarm, name))
    if version == 0:
        raise click.ClickException(f"{swarm} has no state to checkpoint")
    _emit(
        {"swarm": swarm, "name": name, "version": version},
        as_json,
        lambda: click.echo(f"checkpoint {name} of {swarm} at version {version}"),
    )


@checkpoint.command("list")
@click.argument("swarm")
@_json_option
@click.pass_context
def checkpoint_list(ctx: click.Context, swarm: str, as_json: bool) -> None:
    """SWARM's checkpoints, newest first, each verified."""
    rows = _run(ctx, lambda s, k: _manager(ctx, s, k).list_checkpoints(swarm))
    _emit(rows, as_json, _points_table(rows, "checkpoint"))


@checkpoint.command("restore")
@click.argument("swarm")
@click.argument("name", required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.pass_context
def checkpoint_restore(
    ctx: click.Context, swarm: str, name: str | None, yes: bool, as_json: bool
) -> None:
    """Make checkpoint NAME (default: the newest) SWARM's current state."""
    if not yes:
        click.confirm(
            f"replace the state of {swarm} with checkpoint {name or '(newest)'}?",
            abort=True,
            err=True,
        )
    version = _run(ctx, lambda s, k: _manager(ctx, s, k).restore_checkpoint(swarm, name))
    _emit(
        {"swarm": swarm, "checkpoint": name, "version": version},
        as_json,
        lambda: click.echo(f"{swarm} restored; state version {version}"),
    )
