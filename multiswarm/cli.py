"""``multiswarm-cli``: run roles, start a local system, inspect and operate it.

Every command goes through the :class:`~multiswarm.api.Multiswarm` facade (or, to start
processes, :mod:`multiswarm.node_api`) and takes ``--redis-url`` (default:
``MULTISWARM_REDIS_URL`` or the classic ``REDIS_HOST``... variables), ``--namespace`` and
``--json``, before or after the subcommand. Errors are one line: exit 2 for bad input, 1 for
anything else.
"""

from __future__ import annotations

import click

from multiswarm import Multiswarm
from multiswarm.cli_api import run_api_cmd
from multiswarm.cli_common import (
    add_global_options,
    call,
    configure_logging,
    emit,
    global_options,
)
from multiswarm.cli_messages import messages
from multiswarm.cli_ops import breakers, config, resources, votes
from multiswarm.cli_recover import checkpoint, recover, snapshot
from multiswarm.cli_run import demo, run, up
from multiswarm.cli_swarms import agents, leader_dict, pause, resume, scale, status, swarms
from multiswarm.cli_tasks import tasks
from multiswarm.cli_tasks_view import tasks_list, tasks_show


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """multiswarm: coordinate many AI-agent swarms across machines through Redis.

    \b
    Start here:
      multiswarm-cli demo             run the real workload end to end (private Redis if none)
      multiswarm-cli up               a local system: registry, 2 coordinators, state, workers
      multiswarm-cli status           what is registered, who leads, task counts
    """
    configure_logging(ctx, verbose)


cli.params += global_options(root=True)


# -- inspection --------------------------------------------------------------------------------
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
            + "".join(
                f"\npartition {p.partition}: {p.holder or 'vacant'} epoch {p.epoch}"
                for p in info.partitions
            )
        ),
    )


tasks.add_command(tasks_list)
tasks.add_command(tasks_show)
run.add_command(run_api_cmd)
for group in (
    status,
    agents,
    swarms,
    pause,
    resume,
    scale,
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
