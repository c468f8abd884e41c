"""Operator commands for resilience: ``breakers``, ``resources`` and ``votes`` groups.

Registered on ``multiswarm-cli`` by :mod:`multiswarm.cli`; every command takes ``--json`` and
reads the connection settings from ``ctx.obj["settings"]``.

\b
  breakers list | reset NAME | reset-all     shared circuit breakers
  resources [--json]                        pools: capacity, allocated, free, holders
  resources init TYPE CAPACITY              create a pool or change its capacity
  resources release SWARM                   give back everything a swarm holds
  votes list | show PROPOSAL                consensus votes and their results
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from multiswarm.breakers import BreakerRegistry
from multiswarm.cli_common import emit, run_async
from multiswarm.consensus import Consensus, VoteResult
from multiswarm.keys import Keys
from multiswarm.resources import STANDARD_TYPES, ResourcePools
from multiswarm.scripts import Scripts

T = TypeVar("T")

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _run(ctx: click.Context, fn: Callable[[Scripts, Keys], Awaitable[T]]) -> T:
    return run_async(ctx, fn)


def _emit(data: Any, as_json: bool, table: Callable[[], None]) -> None:
    emit(data, as_json, table)


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for i, column in enumerate(columns):  # the first column names the row: never cut it
        t.add_column(column, no_wrap=i == 0)
    for r in rows:
        t.add_row(*r)
    Console().print(t)


def _ms(ms: int) -> str:
    return f"{ms / 1000:.1f} s" if ms else ""


# -- breakers -------------------------------------------------------------------------------------
@click.group()
def breakers() -> None:
    """Circuit breakers shared by every process (closed / open / half_open)."""


@breakers.command("list")
@_json_option
@click.pass_context
def breakers_list(ctx: click.Context, as_json: bool) -> None:
    """Every breaker: state, failures, trial calls, times opened, last error."""
    states = _run(ctx, lambda s, k: BreakerRegistry(s, k).states())
    data = [msgspec.to_builtins(v) for v in states.values()]
    _emit(
        data,
        as_json,
        lambda: _print_table(
            "circuit breakers",
            ["name", "state", "failures", "trials", "opens", "retry in", "last error"],
            [
                [
                    b.name,
                    b.state,
                    f"{b.failures}/{b.config.failure_threshold}",
                    f"{b.trials}/{b.config.half_open_calls}" if b.state == "half_open" else "",
                    str(b.opens),
                    _ms(b.retry_after_ms),
                    b.last_error[:60],
                ]
                for b in states.values()
            ],
        ),
    )


@breakers.command("reset")
@click.argument("name")
@_json_option
@click.pass_context
def breakers_reset(ctx: click.Context, name: str, as_json: bool) -> None:
    """Force breaker NAME closed (its counts cleared; calls in flight no longer count)."""
    if not _run(ctx, lambda s, k: BreakerRegistry(s, k).reset(name)):
        raise click.ClickException(f"no breaker named {name!r}")
    _emit({"reset": [name]}, as_json, lambda: click.echo(f"{name} closed"))


@breakers.command("reset-all")
@_json_option
@click.pass_context
def breakers_reset_all(ctx: click.Context, as_json: bool) -> None:
    """Force every breaker closed."""
    names = _run(ctx, lambda s, k: BreakerRegistry(s, k).reset_all())
    _emit(
        {"reset": names},
        as_json,
        lambda: click.echo(
            f"{len(names)} breakers closed" + (": " + ", ".join(names) if names else "")
        ),
    )


# -- resources ------------------------------------------------------------------------------------
@click.group(invoke_without_command=True)
@_json_option
@click.pass_context
def resources(ctx: click.Context, as_json: bool) -> None:
    """Resource pools: capacity, allocated, free and who holds what."""
    if ctx.invoked_subcommand is not None:
        return
    usage = _run(ctx, lambda s, k: ResourcePools(s, k).usage())
    data = {t: msgspec.to_builtins(u) for t, u in usage.items()}
    _emit(
        data,
        as_json,
        lambda: _print_table(
            "resource pools",
            ["type", "unit", "capacity", "allocated", "free", "holders"],
            [
                [
                    u.type,
                    STANDARD_TYPES.get(u.type, ""),
                    str(u.capacity),
                    str(u.allocated),
                    str(u.free),
                    ", ".join(f"{s}={a}" for s, a in u.holders.items()),
                ]
                for u in usage.values()
            ],
        ),
    )


@resources.command("init")
@click.argument("type_", metavar="TYPE")
@click.argument("capacity", type=click.IntRange(0, 2**53 - 1))
@_json_option
@click.pass_context
def resources_init(ctx: click.Context, type_: str, capacity: int, as_json: bool) -> None:
    """Create pool TYPE with CAPACITY (cpu in millicores, memory in MiB), or resize it."""
    out = _run(ctx, lambda s, k: ResourcePools(s, k).init_pool(type_, capacity))
    _emit(
        {"type": type_, "capacity": capacity, "outcome": out},
        as_json,
        lambda: click.echo(f"{type_} {out}: capacity {capacity}"),
    )


@resources.command("release")
@click.argument("swarm_id", metavar="SWARM")
@_json_option
@click.pass_context
def resources_release(ctx: click.Context, swarm_id: str, as_json: bool) -> None:
    """Give back everything SWARM holds, in every pool."""
    out = _run(ctx, lambda s, k: ResourcePools(s, k).release_all(swarm_id))
    _emit(
        {"swarm": swarm_id, "released": out},
        as_json,
        lambda: click.echo(
            f"{swarm_id}: released " + (", ".join(f"{t} {a}" for t, a in out.items()) or "nothing")
        ),
    )


# -- votes ----------------------------------------------------------------------------------------
@click.group()
def votes() -> None:
    """Consensus votes among swarms: proposals, counts, results."""


def _vote_row(v: VoteResult) -> list[str]:
    left = max(0, v.deadline_ms - int(time.time() * 1000)) if v.status == "open" else 0
    counts = ", ".join(f"{o}={c}" for o, c in v.counts.items())
    return [
        v.id,
        v.topic[:40],
        v.status,
        v.result,
        f"{counts} (q={v.quorum}/n={v.n}, {len(v.equivocators)} equivocated)",
        _ms(left),
    ]


_VOTE_COLUMNS = ["proposal", "topic", "status", "result", "votes", "closes in"]


@votes.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@_json_option
@click.pass_context
def votes_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The newest proposals with their status and counts."""
    found = _run(ctx, lambda s, k: Consensus(s, k, sender="operator").proposals(limit))
    _emit(
        [msgspec.to_builtins(v) for v in found],
        as_json,
        lambda: _print_table("votes", _VOTE_COLUMNS, [_vote_row(v) for v in found]),
    )


@votes.command("show")
@click.argument("proposal_id", metavar="PROPOSAL")
@_json_option
@click.pass_context
def votes_show(ctx: click.Context, proposal_id: str, as_json: bool) -> None:
    """One proposal: every vote, equivocators, voters still missing."""
    v = _run(ctx, lambda s, k: Consensus(s, k, sender="operator").tally(proposal_id))
    data = msgspec.to_builtins(v)

    def table() -> None:
        for key, value in data.items():
            click.echo(f"{key:>13}: {value}")

    _emit(data, as_json, table)
