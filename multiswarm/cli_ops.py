"""Operator commands for resilience: ``breakers``, ``resources`` and ``votes`` groups.

\b
  breakers list | reset NAME | reset-all     shared circuit breakers
  resources                                 pools: capacity, allocated, free, holders
  resources init TYPE CAPACITY              create a pool or change its capacity
  resources release SWARM                   give back everything a swarm holds
  votes list | show PROPOSAL                consensus votes and their results
  config show | set NAME=MS...              deployment-wide timings
"""

from __future__ import annotations

import time

import click

from multiswarm import Multiswarm, VoteResult
from multiswarm.api_types import RESOURCE_UNITS
from multiswarm.cli_common import call, emit, seconds, table, usage_failure


# -- breakers -------------------------------------------------------------------------------------
@click.group()
def breakers() -> None:
    """Circuit breakers shared by every process (closed / open / half_open)."""


@breakers.command("list")
@click.pass_context
def breakers_list(ctx: click.Context) -> None:
    """Every breaker: state, failures, trial calls, times opened, last error."""
    states = call(ctx, Multiswarm.list_breakers)
    emit(
        ctx,
        states,
        lambda: table(
            ["name", "state", "failures", "trials", "opens", "retry in", "last error"],
            [
                [
                    b.name,
                    b.state,
                    f"{b.failures}/{b.config.failure_threshold}",
                    f"{b.trials}/{b.config.half_open_calls}" if b.state == "half_open" else "",
                    b.opens,
                    seconds(b.retry_after_ms),
                    b.last_error[:60],
                ]
                for b in states
            ],
            "circuit breakers",
        ),
    )


@breakers.command("reset")
@click.argument("name")
@click.pass_context
def breakers_reset(ctx: click.Context, name: str) -> None:
    """Force breaker NAME closed (its counts cleared; calls in flight no longer count)."""
    if not call(ctx, lambda ms: ms.reset_breaker(name)):
        raise click.ClickException(f"no breaker named {name!r}")
    emit(ctx, {"reset": [name]}, f"{name} closed")


@breakers.command("reset-all")
@click.pass_context
def breakers_reset_all(ctx: click.Context) -> None:
    """Force every breaker closed."""
    names = call(ctx, Multiswarm.reset_breakers)
    listed = ": " + ", ".join(names) if names else ""
    emit(ctx, {"reset": names}, f"{len(names)} breakers closed{listed}")


# -- resources ------------------------------------------------------------------------------------
@click.group(invoke_without_command=True)
@click.pass_context
def resources(ctx: click.Context) -> None:
    """Resource pools: capacity, allocated, free and who holds what."""
    if ctx.invoked_subcommand is not None:
        return
    pools = call(ctx, Multiswarm.list_resources)
    emit(
        ctx,
        {u.type: u for u in pools},
        lambda: table(
            ["type", "unit", "capacity", "allocated", "free", "holders"],
            [
                [
                    u.type,
                    RESOURCE_UNITS.get(u.type, ""),
                    u.capacity,
                    u.allocated,
                    u.free,
                    ", ".join(f"{s}={a}" for s, a in u.holders.items()),
                ]
                for u in pools
            ],
            "resource pools",
        ),
    )


@resources.command("init")
@click.argument("type_", metavar="TYPE")
@click.argument("capacity", type=click.IntRange(0, 2**53 - 1))
@click.pass_context
def resources_init(ctx: click.Context, type_: str, capacity: int) -> None:
    """Create pool TYPE with CAPACITY (cpu in millicores, memory in MiB), or resize it."""
    out = call(ctx, lambda ms: ms.init_resource_pool(type_, capacity))
    emit(
        ctx,
        {"type": type_, "capacity": capacity, "outcome": out},
        f"{type_} {out}: capacity {capacity}",
    )


@resources.command("release")
@click.argument("swarm_id", metavar="SWARM")
@click.pass_context
def resources_release(ctx: click.Context, swarm_id: str) -> None:
    """Give back everything SWARM holds, in every pool."""
    out = call(ctx, lambda ms: ms.release_resources(swarm_id))
    released = ", ".join(f"{t} {a}" for t, a in out.items()) or "nothing"
    emit(
        ctx,
        {"swarm": swarm_id, "released": out},
        f"{swarm_id}: released {released}",
    )


# -- votes ----------------------------------------------------------------------------------------
@click.group()
def votes() -> None:
    """Consensus votes among swarms: proposals, counts, results."""


def _vote_row(v: VoteResult) -> list[str]:
    left = max(0, v.deadline_ms - int(time.time() * 1000)) if v.status == "open" else 0
    counts = ", ".join(f"{o}={c}" for o, c in v.counts.items())
    tally = f"{counts} (q={v.quorum}/n={v.n}, {len(v.equivocators)} equivocated)"
    return [v.id, v.topic[:40], v.status, v.result, tally, seconds(left)]


@votes.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_context
def votes_list(ctx: click.Context, limit: int) -> None:
    """The newest proposals with their status and counts."""
    found = call(ctx, lambda ms: ms.list_votes(limit))
    emit(
        ctx,
        found,
        lambda: table(
            ["proposal", "topic", "status", "result", "votes", "closes in"],
            [_vote_row(v) for v in found],
            "votes",
        ),
    )


@votes.command("show")
@click.argument("proposal_id", metavar="PROPOSAL")
@click.pass_context
def votes_show(ctx: click.Context, proposal_id: str) -> None:
    """One proposal: every vote, equivocators, voters still missing."""
    v = call(ctx, lambda ms: ms.get_vote(proposal_id))

    def text() -> None:
        for field in v.__struct_fields__:
            click.echo(f"{field:>13}: {getattr(v, field)}")

    emit(ctx, v, text)


# -- deployment-wide timings ----------------------------------------------------------------------
@click.group()
def config() -> None:
    """Timings every process of the deployment shares (stored once in Redis)."""


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Heartbeat timeout, leader lease, task lease and result TTL, and who stored them."""
    stored = call(ctx, Multiswarm.deployment)
    if stored is None:
        emit(ctx, None, "no timings stored yet: the first process to start stores its own")
        return
    emit(
        ctx,
        stored,
        lambda: table(
            ["setting", "ms"],
            [
                ["heartbeat_timeout_ms (HEARTBEAT_INTERVAL)", stored.heartbeat_timeout_ms],
                ["lease_ms (MULTISWARM_LEASE_MS)", stored.lease_ms],
                ["task_lease_ms (MULTISWARM_TASK_LEASE_MS)", stored.task_lease_ms],
                ["result_ttl_ms (MULTISWARM_RESULT_TTL_MS)", stored.result_ttl_ms],
                ["partitions (MULTISWARM_PARTITIONS)", stored.partitions],
            ],
            f"set by {stored.set_by}",
        ),
    )


@config.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="NAME=MS...")
@click.pass_context
def config_set(ctx: click.Context, assignments: tuple[str, ...]) -> None:
    """Change timings, e.g. ``config set heartbeat_timeout_ms=10000``. Running processes keep
    theirs until restarted; processes started later adopt the new ones."""
    changes: dict[str, int] = {}
    for item in assignments:
        name, eq, value = item.partition("=")
        if not eq or not (value.isascii() and value.isdigit()):
            raise usage_failure(f"{item!r}: expected NAME=MILLISECONDS, e.g. lease_ms=30000")
        changes[name] = int(value)
    stored = call(ctx, lambda ms: ms.configure_deployment(**changes))
    emit(ctx, stored, f"stored: {', '.join(f'{k}={v}' for k, v in changes.items())}")
