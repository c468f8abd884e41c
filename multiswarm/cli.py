"""``multiswarm-cli``: run roles, start a local system, inspect and operate it.

Every command goes through the :class:`~multiswarm.api.Multiswarm` facade (or, to start
processes, :mod:`multiswarm.node_api`) and takes ``--redis-url`` (default:
``MULTISWARM_REDIS_URL`` or the classic ``REDIS_HOST``... variables), ``--namespace`` and
``--json``, before or after the subcommand. Errors are one line: exit 2 for bad input, 1 for
anything else.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from multiswarm import LeaderInfo, Multiswarm
from multiswarm.cli_api import run_api_cmd
from multiswarm.cli_common import (
    add_global_options,
    call,
    emit,
    global_options,
    table,
)
from multiswarm.cli_messages import messages
from multiswarm.cli_ops import breakers, config, resources, votes
from multiswarm.cli_recover import checkpoint, recover, snapshot
from multiswarm.cli_run import demo, run, up
from multiswarm.cli_tasks import tasks


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """multiswarm: coordinate many AI-agent swarms across machines through Redis.

    \b
    Start here:
      multiswarm-cli demo             run the real workload end to end (private Redis if none)
      multiswarm-cli up               a local system: registry, 2 coordinators, state, workers
      multiswarm-cli status           what is registered, who leads, task counts
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


cli.params += global_options(root=True)


# -- inspection --------------------------------------------------------------------------------
def leader_dict(info: LeaderInfo | None) -> dict[str, Any]:
    """The ``leader --json`` object; every field null (lease 0) while the lease is vacant."""
    if info is None:
        return {"holder": None, "host": None, "pid": None, "epoch": None, "lease_ms_left": 0}
    return {f: getattr(info, f) for f in info.__struct_fields__}


@cli.command()
@click.pass_context
def leader(ctx: click.Context) -> None:
    """Who holds the leader lease: holder, host, pid, epoch, lease_ms_left."""
    info = call(ctx, Multiswarm.leader)
    emit(
        ctx,
        leader_dict(info),
        (
            "no leader"
            if info is None
            else f"{info.holder} (host {info.host}, pid {info.pid}) epoch {info.epoch}, "
            f"lease {info.lease_ms_left} ms left"
        ),
    )


@cli.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Swarms, workers, the leader and task counts."""
    report = call(ctx, Multiswarm.status)
    data: dict[str, Any] = {
        **{f: getattr(report, f) for f in report.__struct_fields__},
        "leader": leader_dict(report.leader),
    }

    def text() -> None:
        ld = report.leader
        click.echo(
            f"namespace {report.namespace}; leader: "
            + (f"{ld.holder} epoch {ld.epoch}" if ld else "none")
        )
        table(
            ["swarm", "status", "capabilities", "active/capacity", "hosts"],
            [
                [
                    s.id,
                    s.status + (" (paused)" if s.paused else ""),
                    ",".join(s.capabilities),
                    f"{s.active}/{s.capacity}",
                    ",".join(s.hosts),
                ]
                for s in report.swarms
            ],
        )
        table(
            ["worker", "host", "pid", "running", "last beat"],
            [
                [w.id, w.host, w.pid, w.running, f"{w.beat_ms_ago / 1000:.1f} s ago"]
                for w in report.workers
            ],
        )
        click.echo("tasks: " + ", ".join(f"{k} {v}" for k, v in report.tasks.items()))

    emit(ctx, data, text)


# -- swarm operations --------------------------------------------------------------------------
def _pause_command(paused: bool) -> click.Command:
    verb = "pause" if paused else "resume"
    doc = (
        "Stop dispatch to SWARM and claims by its workers; running tasks finish, queued ones wait."
        if paused
        else "Let SWARM take work again after a pause."
    )

    @click.command(verb, help=doc)
    @click.argument("swarm_id", metavar="SWARM")
    @click.pass_context
    def command(ctx: click.Context, swarm_id: str) -> None:
        method = Multiswarm.pause_swarm if paused else Multiswarm.resume_swarm
        changed = call(ctx, lambda ms: method(ms, swarm_id))
        emit(
            ctx,
            {"swarm": swarm_id, "paused": paused, "changed": changed},
            f"{swarm_id} {verb}d" if changed else f"{swarm_id} was already {verb}d",
        )

    return command


cli.add_command(_pause_command(True))
cli.add_command(_pause_command(False))


@cli.command()
@click.argument("swarm_id", metavar="SWARM")
@click.argument("target", type=click.IntRange(1, 1000))
@click.pass_context
def scale(ctx: click.Context, swarm_id: str, target: int) -> None:
    """Scale SWARM to TARGET members per hosting worker: growth split 70% Python agents / 30%
    external members, Python agents removed first, at least one of each kind kept."""
    python, external = call(ctx, lambda ms: ms.scale_swarm(swarm_id, target))
    emit(
        ctx,
        {"swarm": swarm_id, "python": python, "external": external},
        f"{swarm_id}: {python} Python agents, {external} external members",
    )


@cli.group()
def agents() -> None:
    """The members of swarms (Python agents and external processes) and their health."""


@agents.command("list")
@click.option("--swarm", "swarm_id", default=None, help="Only this swarm's members.")
@click.pass_context
def agents_list(ctx: click.Context, swarm_id: str | None) -> None:
    """Every member as its worker last reported it; ``stale`` when that report is older than
    30 s."""
    rows = call(ctx, lambda ms: ms.list_agents(swarm_id))
    columns = ["agent", "swarm", "worker", "kind", "state", "health", "failures", "restarts"]
    emit(
        ctx,
        rows,
        lambda: table(
            [*columns, "stale"],
            [[getattr(a, c) for c in columns] + ["stale" if a.stale else ""] for a in rows],
        ),
    )


run.add_command(run_api_cmd)
for group in (
    run,
    up,
    demo,
    recover,
    snapshot,
    checkpoint,
    breakers,
    resources,
    votes,
    tasks,
    config,
):
    cli.add_command(group)
cli.add_command(messages)
add_global_options(cli)


def main() -> None:
    cli(prog_name="multiswarm-cli")


if __name__ == "__main__":
    main()
