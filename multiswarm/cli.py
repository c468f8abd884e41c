"""``multiswarm-cli``: run roles, start a local system, inspect and operate it.

Every command goes through the :class:`~multiswarm.api.Multiswarm` facade (or, to start
processes, :mod:`multiswarm.node_api`) and takes ``--redis-url`` (default:
``MULTISWARM_REDIS_URL`` or the classic ``REDIS_HOST``... variables), ``--namespace`` and
``--json``, before or after the subcommand. Errors are one line: exit 2 for bad input, 1 for
anything else.
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import sys

from multiswarm import agent_start

# `run worker`: the agents' fork server starts before this process imports the rest (~0.3 s of
# CPU), and imports the agent runtime and handler modules meanwhile (decision 68). Not in an
# agent being born: started by the console script, each agent runs that script again as its
# `__mp_main__` (with the worker's argv), and a fork server started there killed it (decision
# 129); `python -m` is not run again.
if (
    not getattr(multiprocessing.current_process(), "_inheriting", False)
    and (_agent_modules := agent_start.worker_modules(sys.argv[1:])) is not None
):
    # the console script's agents need not run it again at all: named as `multiswarm.__main__`
    # (what `python -m multiswarm` is), multiprocessing leaves `__main__` alone in its children
    # (~0.28 s of CPU an agent start otherwise, importing this module and click: found in
    # session 21's review)
    _main = sys.modules["__main__"]
    if getattr(_main, "__spec__", None) is None:
        _main.__spec__ = importlib.util.find_spec("multiswarm.__main__")
    agent_start.prestart(_agent_modules)

import click

from multiswarm.cli_common import (
    add_global_options,
    call,
    configure_logging,
    emit,
    global_options,
)

#: Command -> (module, attribute): each command's module is imported when the command is run
#: or listed, so ``run worker`` starts without the others' imports (the facade's included).
_LAZY: dict[str, tuple[str, str]] = {
    "status": ("multiswarm.cli_swarms", "status"),
    "agents": ("multiswarm.cli_swarms", "agents"),
    "swarms": ("multiswarm.cli_swarms", "swarms"),
    "pause": ("multiswarm.cli_swarms", "pause"),
    "resume": ("multiswarm.cli_swarms", "resume"),
    "scale": ("multiswarm.cli_swarms", "scale"),
    "run": ("multiswarm.cli_run", "run"),
    "up": ("multiswarm.cli_run", "up"),
    "demo": ("multiswarm.cli_run", "demo"),
    "recover": ("multiswarm.cli_recover", "recover"),
    "snapshot": ("multiswarm.cli_recover", "snapshot"),
    "checkpoint": ("multiswarm.cli_recover", "checkpoint"),
    "breakers": ("multiswarm.cli_ops", "breakers"),
    "resources": ("multiswarm.cli_ops", "resources"),
    "votes": ("multiswarm.cli_ops", "votes"),
    "tasks": ("multiswarm.cli_tasks", "tasks"),
    "config": ("multiswarm.cli_ops", "config"),
    "messages": ("multiswarm.cli_messages", "messages"),
}


def _load(name: str) -> click.Command:
    module, attr = _LAZY[name]
    command: click.Command = getattr(importlib.import_module(module), attr)
    if name == "tasks":
        from multiswarm.cli_tasks_view import tasks_list, tasks_show

        assert isinstance(command, click.Group)
        command.add_command(tasks_list)
        command.add_command(tasks_show)
    elif name == "run":
        from multiswarm.cli_api import run_api_cmd

        assert isinstance(command, click.Group)
        command.add_command(run_api_cmd)
    return command


class _LazyGroup(click.Group):
    """A group whose commands of :data:`_LAZY` are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY:
            self.add_command(_load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        add_global_options(cmd)  # once: it skips options a command has already
        super().add_command(cmd, name)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
    from multiswarm.api import Multiswarm
    from multiswarm.cli_swarms import leader_dict

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


add_global_options(cli)


def main() -> None:
    cli(prog_name="multiswarm-cli")


if __name__ == "__main__":
    main()
