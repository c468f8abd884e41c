"""Operator commands for recovery: the ``recover`` group and the ``snapshot`` and
``checkpoint`` groups (one definition, :func:`recovery_points_group`).

\b
  recover list                        interrupted swarms, best source, confidence
  recover plan SWARM                  dry run: what apply would do
  recover apply SWARM [--source ...] [--min-confidence X] [--yes]
  recover all [--min-confidence X] [--yes]
  recover quarantine SWARM | recover log SWARM
  snapshot create|list|restore        checkpoint create|list|restore
"""

from __future__ import annotations

from typing import Any, Literal

import click

from multiswarm import Multiswarm, MultiswarmError, NotInterrupted, RecoveryOutcome, RecoveryPlan
from multiswarm.api_types import RECOVERY_SOURCES
from multiswarm.cli_common import ago, as_json, call, emit, settings_of, table

_source_option = click.option(
    "--source",
    type=click.Choice(RECOVERY_SOURCES),
    default=None,
    help="Recover from this source only [default: first valid of state, checkpoint, snapshot].",
)
_yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
#: Plans applied per call of ``recover all`` (one progress step).
APPLY_BATCH = 50


def _ids(label: str, values: list[str]) -> str:
    shown = ", ".join(values[:10]) + (f", ... (+{len(values) - 10})" if len(values) > 10 else "")
    return f"{label}: {len(values)}" + (f" ({shown})" if values else "")


def print_plan(p: RecoveryPlan) -> None:
    """A plan as ``recover plan`` prints it: source, confidence and its factors, the tasks."""
    ev, echo = p.evidence, click.echo
    echo(
        f"swarm {p.swarm} ({p.status} since {ago(p.interrupted_ms)}), plan {p.plan_id}"
        + (" [resume]" if p.resume else "")
    )
    if p.source == "none":
        echo("source: none valid (tasks are re-queued from the registry only)")
    else:
        echo(
            f"source: {p.source} {p.source_id} ({p.source_label}), version {p.source_version}, "
            f"captured {ev.age_ms / 1000:.1f} s before the interruption"
        )
    echo(
        f"confidence: {p.confidence:.2f} = 0.5 + 0.45 x kind {ev.kind:.2f} x freshness "
        f"{ev.freshness:.2f} x tasks {ev.tasks:.2f} ({ev.tasks_complete}/{ev.tasks_known} "
        f"complete) x agents {ev.agents:.2f} ({ev.agents_recorded}/{ev.agents_expected})"
    )
    echo(_ids("tasks to re-queue", p.requeue))
    echo(_ids("already completed", p.completed))
    echo(_ids("moved on (retrying, elsewhere, ended)", p.elsewhere))
    echo(_ids("incomplete definitions", p.missing))
    echo(_ids("agents to restart", p.agents))
    echo(f"estimated time: {p.estimated_ms / 1000:.1f} s")
    for r in p.rejected:
        quarantined = " (quarantined)" if r.quarantined else ""
        echo(f"rejected {r.source} {r.id or '?'}: {r.reason}{quarantined}")
    for a in p.alternatives:
        echo(f"alternative: {a.source} {a.id} ({a.label}) confidence {a.confidence:.2f}")


@click.group()
def recover() -> None:
    """See, plan and apply the recovery of interrupted swarms."""


@recover.command("list")
@click.pass_context
def recover_list(ctx: click.Context) -> None:
    """Interrupted swarms: best source, confidence, and whether auto-recovery would apply."""
    threshold = settings_of(ctx).auto_recover_min_confidence
    rows: list[dict[str, Any]] = []
    for sid, p in call(ctx, Multiswarm.plan_recoveries).items():
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

    def text() -> None:
        if not rows:
            click.echo("no interrupted swarms")
            return
        table(
            ["swarm", "status", "since", "source", "confidence", "auto", "re-queue", "rejected"],
            [
                [r["swarm"], "error", "", r["error"], "", "", "", ""]
                if "error" in r
                else [
                    r["swarm"],
                    r["status"],
                    ago(r["interrupted_ms"]),
                    f"{r['source']} {r['source_id']}",
                    f"{r['confidence']:.2f}",
                    "yes" if r["auto"] else "no",
                    r["requeue"],
                    r["rejected"],
                ]
                for r in rows
            ],
        )

    emit(ctx, rows, text)


def _plan(ctx: click.Context, swarm: str, source: str | None, apply: bool) -> RecoveryPlan | str:
    """The plan, or why there is none (the swarm is not interrupted)."""

    async def make(ms: Multiswarm) -> RecoveryPlan | str:
        try:
            return await ms.plan_recovery(swarm, source, quarantine=apply)
        except NotInterrupted as e:
            return str(e)

    return call(ctx, make)


@recover.command("plan")
@click.argument("swarm")
@_source_option
@click.pass_context
def recover_plan(ctx: click.Context, swarm: str, source: str | None) -> None:
    """Dry run: what `recover apply SWARM` would do. Nothing is written (corrupted entries are
    reported, not moved)."""
    plan = _plan(ctx, swarm, source, apply=False)
    if isinstance(plan, str):
        out = {"swarm": swarm, "plan": None, "detail": plan}
        emit(ctx, out, f"nothing to recover: {plan}")
    else:
        emit(ctx, {"swarm": swarm, "plan": plan.to_dict(), "detail": ""}, lambda: print_plan(plan))


@recover.command("apply")
@click.argument("swarm")
@_source_option
@click.option(
    "--min-confidence",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Refuse (exit 1) when the plan's confidence is lower.",
)
@_yes_option
@click.pass_context
def recover_apply(
    ctx: click.Context, swarm: str, source: str | None, min_confidence: float | None, yes: bool
) -> None:
    """Recover SWARM: re-queue its in-flight tasks once and move it interrupted -> recovering ->
    active. Applying again does nothing. Corrupted sources are quarantined on the way."""
    plan = _plan(ctx, swarm, source, apply=True)
    if isinstance(plan, str):
        detail = "nothing to recover (already recovered, or never interrupted)"
        out = {"swarm": swarm, "outcome": "not_interrupted", "plan": None, "detail": detail}
        emit(ctx, out, f"{swarm}: {detail}")
        return
    if not as_json(ctx):
        print_plan(plan)
    if min_confidence is not None and plan.confidence < min_confidence and not plan.resume:
        raise click.ClickException(
            f"confidence {plan.confidence:.2f} is below "
            f"--min-confidence {min_confidence:.2f}; nothing applied"
        )
    if not yes:
        click.confirm(f"apply plan {plan.plan_id}?", abort=True, err=True)
    outcome = call(ctx, lambda ms: ms.apply_recovery(plan, min_confidence))
    emit(
        ctx,
        {**outcome.to_dict(), "plan": plan.to_dict()},
        (
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
@_yes_option
@click.pass_context
def recover_all(
    ctx: click.Context, min_confidence: float | None, source: str | None, yes: bool
) -> None:
    """Recover every interrupted swarm whose plan reaches the minimum confidence; list the
    rest for a closer look (`recover plan`)."""
    floor = settings_of(ctx).auto_recover_min_confidence
    floor = floor if min_confidence is None else min_confidence
    go: list[RecoveryPlan] = []
    skipped: list[dict[str, Any]] = []
    plans = call(ctx, lambda ms: ms.plan_recoveries(source, quarantine=True))
    for sid, p in plans.items():
        if isinstance(p, MultiswarmError):
            skipped.append({"swarm": sid, "reason": str(p)})
        elif p.resume or p.confidence >= floor:
            go.append(p)
        else:
            reason = f"confidence {p.confidence:.2f} < {floor:.2f}"
            skipped.append(
                {"swarm": sid, "reason": reason, "confidence": p.confidence, "source": p.source}
            )
    quiet = as_json(ctx)
    if not quiet:
        click.echo(f"{len(go)} swarms at or above confidence {floor:.2f}; {len(skipped)} left")
    if go and not yes:
        click.confirm(f"recover {len(go)} swarms?", abort=True, err=True)

    async def apply(ms: Multiswarm) -> list[RecoveryOutcome]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        outcomes: list[RecoveryOutcome] = []
        columns = ("recovering", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), disable=quiet) as progress:
            bar = progress.add_task("recover", total=len(go))
            for start in range(0, len(go), APPLY_BATCH):
                outcomes += await ms.apply_recoveries(go[start : start + APPLY_BATCH])
                progress.advance(bar, len(go[start : start + APPLY_BATCH]))
        return outcomes

    outcomes = call(ctx, apply) if go else []
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    report = {"min_confidence": floor, "outcomes": outcomes, "counts": counts, "skipped": skipped}

    def text() -> None:
        for o in outcomes:
            click.echo(
                f"{o.swarm}: {o.outcome} from {o.source} ({o.confidence:.2f}), "
                f"{len(o.requeued)} tasks re-queued"
            )
        for s in skipped:
            click.echo(f"{s['swarm']}: left ({s['reason']})")

    emit(ctx, report, text)
    if any(o.outcome == "error" for o in outcomes):
        ctx.exit(1)


@recover.command("quarantine")
@click.argument("swarm")
@click.pass_context
def recover_quarantine(ctx: click.Context, swarm: str) -> None:
    """Entries of SWARM moved to quarantine, with the reason (newest first)."""
    rows = call(ctx, lambda ms: ms.quarantined(swarm))

    def text() -> None:
        for r in rows:
            click.echo(f"{r.kind} {r.id or '?'} {ago(r.at_ms)}: {r.reason}")
        if not rows:
            click.echo("nothing quarantined")

    emit(ctx, rows, text)


@recover.command("log")
@click.argument("swarm")
@click.pass_context
def recover_log(ctx: click.Context, swarm: str) -> None:
    """What each recovery of SWARM did (newest first)."""
    rows = call(ctx, lambda ms: ms.recovery_log(swarm))

    def text() -> None:
        for r in rows:
            click.echo(
                f"{r.plan} {ago(r.at_ms)} by {r.by}: from {r.source} ({r.confidence}), "
                f"{len(r.requeued)} re-queued"
            )
        if not rows:
            click.echo("no recoveries")

    emit(ctx, rows, text)


# -- snapshots and checkpoints ---------------------------------------------------------------
def recovery_points_group(kind: Literal["snapshot", "checkpoint"]) -> click.Group:
    """The ``snapshot`` or ``checkpoint`` group: create, list, restore. A snapshot is labelled
    and found by id; a checkpoint is found by its name."""
    named = kind == "checkpoint"
    key = "name" if named else "label"
    summary = (
        "Named manual recovery points of a swarm's state (10 kept)."
        if named
        else "Snapshots of a swarm's state (automatic every SNAPSHOT_INTERVAL; 10 kept)."
    )
    group = click.Group(kind, help=summary)

    create_help = (
        "Copy SWARM's current state as checkpoint NAME (replacing an older one of that name)."
        if named
        else "Copy SWARM's current state into its snapshots (the oldest beyond 10 is dropped)."
    )

    @group.command("create", help=create_help)
    @click.argument("swarm")
    @(
        click.argument("name")
        if named
        else click.option("--label", default="manual", show_default=True)
    )
    @click.pass_context
    def create(ctx: click.Context, /, swarm: str, **given: str) -> None:
        label = given[key]

        async def make(ms: Multiswarm) -> int:
            if named:
                return await ms.create_checkpoint(swarm, label)
            return await ms.create_snapshot(swarm, label)

        version = call(ctx, make)
        if version == 0:
            raise click.ClickException(f"{swarm} has no state to {kind}")
        emit(
            ctx,
            {"swarm": swarm, key: label, "version": version},
            f"{kind} {label} of {swarm} at version {version}",
        )

    @group.command("list", help=f"SWARM's {kind}s, newest first, each verified.")
    @click.argument("swarm")
    @click.pass_context
    def list_(ctx: click.Context, swarm: str) -> None:
        rows = call(ctx, lambda ms: ms.list_recovery_points(swarm, kind))
        if not rows and not as_json(ctx):
            click.echo(f"no {kind}s")
            return
        emit(
            ctx,
            rows,
            lambda: table(
                ["id", key, "version", "taken", "bytes", "integrity"],
                [[r.id, r.label, r.version, ago(r.taken_ms), r.bytes, r.integrity] for r in rows],
            ),
        )

    what = "checkpoint NAME" if named else "snapshot ID"
    restore_help = f"Make {what} (default: the newest) SWARM's current state."

    @group.command("restore", help=restore_help)
    @click.argument("swarm")
    @click.argument("point", metavar="[NAME]" if named else "[ID]", required=False)
    @_yes_option
    @click.pass_context
    def restore(ctx: click.Context, swarm: str, point: str | None, yes: bool) -> None:
        if not yes:
            click.confirm(
                f"replace the state of {swarm} with {kind} {point or '(newest)'}?",
                abort=True,
                err=True,
            )
        version = call(ctx, lambda ms: ms.restore_recovery_point(swarm, kind, point))
        emit(
            ctx,
            {"swarm": swarm, kind: point, "version": version},
            f"{swarm} restored; state version {version}",
        )

    return group


snapshot = recovery_points_group("snapshot")
checkpoint = recovery_points_group("checkpoint")
