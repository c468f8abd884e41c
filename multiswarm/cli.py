"""``multiswarm-cli``: run roles, start a local system, inspect and operate it.

Every command takes ``--redis-url`` (default: ``MULTISWARM_REDIS_URL`` or the classic
``REDIS_HOST``... variables) and ``--namespace``; every report has a ``--json`` form.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from multiswarm.cli_common import emit, run_async, settings_of
from multiswarm.config import from_env
from multiswarm.coordinator import STRATEGIES, current_leader, leader_report
from multiswarm.errors import MultiswarmError
from multiswarm.keys import Keys
from multiswarm.messages import Task
from multiswarm.placement import AGENT_STRATEGIES
from multiswarm.registry import SwarmRegistry, SwarmSpec, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from multiswarm.urls import redact

# the shared helpers, under the names the commands below use
_settings = settings_of
_run = run_async
_emit = emit


def parse_swarm(text: str) -> SwarmSpec:
    """``ID[:cap1+cap2[:agents[:priority]]]`` -> SwarmSpec (``--swarm`` of ``run worker``)."""
    parts = text.split(":")
    caps = [c for c in parts[1].split("+") if c] if len(parts) > 1 else []
    agents = int(parts[2]) if len(parts) > 2 and parts[2] else 2
    priority = parts[3] if len(parts) > 3 else "normal"
    return swarm_spec(parts[0], caps, agents=agents, priority=priority)


#: Options of the root command that may also be given after the subcommand
#: (``multiswarm-cli tasks list --redis-url X``), as users of other CLIs expect.
GLOBAL_OPTIONS = ("--redis-url", "--namespace")


def hoist_global_options(args: list[str]) -> list[str]:
    """Move :data:`GLOBAL_OPTIONS` (``--opt value`` or ``--opt=value``) found anywhere before a
    ``--`` to the front, where the root command parses them; everything else keeps its order."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
        elif name in GLOBAL_OPTIONS and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


class RootGroup(click.Group):
    """The root group: global options are accepted before or after the subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


@click.group(
    cls=RootGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--redis-url",
    envvar="MULTISWARM_REDIS_URL",
    default=None,
    help="redis://, rediss://, unix://, redis+sentinel://, redis+cluster:// "
    "[default: $MULTISWARM_REDIS_URL, else $REDIS_HOST..., else localhost:6379]. "
    "A password given here shows in `ps`: put it in $MULTISWARM_REDIS_URL.",
)
@click.option(
    "--namespace",
    envvar="MULTISWARM_NAMESPACE",
    default=None,
    help="Key prefix and hash tag of the deployment [default: swarm]",
)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, namespace: str | None, verbose: int) -> None:
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
    try:
        settings = from_env(redis_url=redis_url, namespace=namespace)
    except MultiswarmError as e:
        raise click.ClickException(str(e)) from e
    ctx.obj = {"settings": settings}


# -- roles -------------------------------------------------------------------------------------
@cli.group()
def run() -> None:
    """Run one role in this process until SIGTERM (clean shutdown)."""
    # A SIGTERM that arrives while the role is still starting (nothing claimed or led yet) is a
    # clean exit too; serve() installs the real handler once the event loop runs.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(0))


def _lease_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--lease-ms",
        type=click.IntRange(min=300),
        envvar="MULTISWARM_LEASE_MS",
        default=None,
        help="Leader lease [default: 30000].",
    )(f)


@run.command("registry")
@click.pass_context
def run_registry_cmd(ctx: click.Context) -> None:
    """Expire missed heartbeats, archive finished swarms, prune old tasks."""
    from multiswarm.roles import registry_role, serve

    serve(registry_role(_settings(ctx)))


@run.command("coordinator")
@_lease_option
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="least_loaded",
    show_default=True,
    help="How the leader assigns tasks to swarms.",
)
@click.option("--id", "holder_id", default=None, help="Contender id [default: host-pid-rand].")
@click.pass_context
def run_coordinator_cmd(
    ctx: click.Context, lease_ms: int | None, strategy: str, holder_id: str | None
) -> None:
    """Contend for leadership; as leader dispatch tasks and requeue expired leases."""
    from multiswarm.roles import coordinator_role, serve

    settings = _settings(ctx)
    if lease_ms:
        settings = settings.replace(lease_ms=lease_ms)
    try:
        serve(coordinator_role(settings, strategy, holder_id))
    except MultiswarmError as e:  # e.g. its --id is taken by a live coordinator
        raise click.ClickException(str(e)) from e


@run.command("state-manager")
@click.pass_context
def run_state_cmd(ctx: click.Context) -> None:
    """Automatic snapshots of active swarms (SNAPSHOT_INTERVAL), and automatic recovery of
    interrupted swarms whose best plan reaches MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE (0.75);
    the rest wait for `multiswarm-cli recover`."""
    from multiswarm.roles import serve, state_manager_role

    serve(state_manager_role(_settings(ctx)))


@run.command("worker")
@click.option(
    "--swarm",
    "swarms",
    multiple=True,
    required=True,
    metavar="ID[:CAPS[:AGENTS[:PRIO]]]",
    help="A swarm to host, e.g. parsers:parse+compress:4:high (repeatable).",
)
@click.option("--id", "worker_id", default=None, help="Worker id [default: host-pid-rand].")
@click.option(
    "--allow-handlers",
    multiple=True,
    metavar="PREFIX",
    help="Import-path prefix of handlers this worker may run [default: multiswarm.].",
)
@click.option(
    "--grace-s",
    type=float,
    default=10.0,
    show_default=True,
    help="On SIGTERM, how long in-flight tasks may finish before being handed back.",
)
@click.option(
    "--agent-strategy",
    type=click.Choice(AGENT_STRATEGIES),
    default="least_loaded",
    show_default=True,
    help="How claimed tasks are placed on a swarm's agents.",
)
@click.option(
    "--memory-mb",
    type=click.IntRange(1, 1 << 20),
    default=28,
    show_default=True,
    help="The node's working-memory pool (64 KiB regions).",
)
@click.option(
    "--external",
    "externals",
    multiple=True,
    metavar="SWARM=COMMAND",
    help="Run COMMAND (any executable) as an external member of SWARM, supervised "
    "like the Python agents (repeatable).",
)
@click.option(
    "--restart-base-s",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="First restart delay of a dead member; doubles per attempt.",
)
@click.option("--restart-attempts", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option(
    "--restart-cooldown-s",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Wait before replacing a member whose restarts failed.",
)
@click.option(
    "--probation-s",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="A restarted member must stay up this long for the restart to count.",
)
@click.pass_context
def run_worker_cmd(
    ctx: click.Context,
    swarms: tuple[str, ...],
    worker_id: str | None,
    allow_handlers: tuple[str, ...],
    grace_s: float,
    agent_strategy: str,
    memory_mb: int,
    externals: tuple[str, ...],
    restart_base_s: float,
    restart_attempts: int,
    restart_cooldown_s: float,
    probation_s: float,
) -> None:
    """Host swarms; their agents claim and run tasks.

    Handlers are imported with the current directory first on the import path (as
    ``rq worker`` does), so a worker started beside ``myapp/`` finds ``myapp.tasks``."""
    from multiswarm.agents import DEFAULT_ALLOWED

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # agent processes (spawn) inherit sys.path
    from multiswarm.roles import serve, worker_role
    from multiswarm.supervisor import Backoff

    try:
        specs = [parse_swarm(s) for s in swarms]
    except (ValueError, MultiswarmError) as e:
        raise click.BadParameter(str(e), param_hint="--swarm") from e
    external = dict(e.split("=", 1) for e in externals if "=" in e)
    if len(external) != len(externals) or not set(external) <= {s.id for s in specs}:
        raise click.BadParameter(
            "expected SWARM=COMMAND for a swarm given with --swarm", param_hint="--external"
        )
    serve(
        worker_role(
            _settings(ctx),
            specs,
            worker_id=worker_id,
            allowed_handlers=allow_handlers or DEFAULT_ALLOWED,
            grace_s=grace_s,
            agent_strategy=agent_strategy,
            pool_bytes=memory_mb * 1024 * 1024,
            external=external,
            backoff=Backoff(
                base_s=restart_base_s,
                attempts=restart_attempts,
                cooldown_s=restart_cooldown_s,
                probation_s=probation_s,
            ),
        )
    )


# -- local system ------------------------------------------------------------------------------
@cli.command()
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--swarms", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option(
    "--agents",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Agent processes per swarm.",
)
@_lease_option
@click.option("--strategy", type=click.Choice(STRATEGIES), default="capability", show_default=True)
@click.option(
    "--allow-handlers",
    multiple=True,
    metavar="PREFIX",
    help="Import-path prefix the workers may run, e.g. myapp. (repeatable) "
    "[default: multiswarm.]. Workers import from the directory `up` starts in.",
)
@click.option(
    "--swarm",
    "user_swarms",
    multiple=True,
    metavar="ID:CAPS:AGENTS[:PRIO]",
    help="One more swarm for the workers to host, e.g. parsers:parse:4:high (repeatable).",
)
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    default=8700,
    show_default=True,
    help="Port of the operations API and dashboard on 127.0.0.1 (`run api`; 0: a free one, "
    "printed by the API).",
)
@click.option("--no-api", is_flag=True, help="Do not start the operations API.")
@click.pass_context
def up(
    ctx: click.Context,
    workers: int,
    swarms: int,
    agents: int,
    lease_ms: int | None,
    strategy: str,
    allow_handlers: tuple[str, ...],
    user_swarms: tuple[str, ...],
    api_port: int,
    no_api: bool,
) -> None:
    """Start a local system (registry, two coordinators, state manager, workers, the operations
    API on 127.0.0.1:8700) until Ctrl-C.

    With no Redis configured and none answering on localhost:6379, a private redis-server is
    started in a temp dir and stopped on exit.
    """
    from multiswarm.demo import ensure_redis, start_system

    settings = _settings(ctx)
    if lease_ms:
        settings = settings.replace(lease_ms=lease_ms)
    for spec in user_swarms:
        try:
            parse_swarm(spec)
        except (ValueError, MultiswarmError) as e:
            raise click.BadParameter(str(e), param_hint="--swarm") from e
    worker_args: list[str] = []
    for prefix in allow_handlers:
        worker_args += ["--allow-handlers", prefix]
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    # Explicit handlers: a shell may start us with SIGINT ignored, and SIGTERM must stop the
    # children too instead of orphaning them.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with ensure_redis(settings, echo=click.echo) as settings:
        group = start_system(
            settings,
            workers=workers,
            swarms=swarms,
            agents=agents,
            strategy=strategy,
            log_dir=None,
            worker_args=worker_args,
            user_swarms=user_swarms,
            api_port=None if no_api else api_port,
        )
        click.echo(
            f"multiswarm up: {len(group.children)} processes on "
            f"{redact(settings.redis_url)} "
            f"(namespace {settings.namespace}); Ctrl-C or SIGTERM to stop"
        )
        # the API is optional: if it cannot start (port taken) the system runs on without it
        roles = [c for c in group.children if c.name != "api"]
        try:
            while not stopping and all(c.alive() for c in roles):
                time.sleep(0.2)
        finally:
            codes = group.stop_all()
            click.echo(f"stopped: {codes}")


@cli.command()
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Directory of .py files [default: this Python's standard library].",
)
@click.option("--swarms", type=click.IntRange(3, 50), default=3, show_default=True)
@click.option("--workers", type=click.IntRange(2, 16), default=2, show_default=True)
@click.option(
    "--agents",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Agent processes per swarm.",
)
@click.option(
    "--lease-ms",
    type=click.IntRange(min=500),
    default=3000,
    show_default=True,
    help="Leader lease (short, so a failover fits in the run).",
)
@click.option("--kill-leader", is_flag=True, help="SIGKILL the leader mid-run.")
@click.option(
    "--kill-worker", is_flag=True, help="SIGKILL a worker mid-run and start a replacement."
)
@click.option(
    "--group-size",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Files merged by one reduce task.",
)
@click.option("--timeout-s", type=float, default=900.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Also run the operations API and dashboard on 127.0.0.1 at this port.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    corpus: str | None,
    swarms: int,
    workers: int,
    agents: int,
    lease_ms: int,
    kill_leader: bool,
    kill_worker: bool,
    group_size: int,
    timeout_s: float,
    as_json: bool,
    api_port: int | None,
) -> None:
    """Count identifiers and compression ratios of a source tree with swarms in many processes.

    Exits non-zero unless the merged result equals the single-process computation.
    """
    from multiswarm.demo import DemoOptions, print_report, run_demo

    opts = DemoOptions(
        corpus=corpus,
        swarms=swarms,
        workers=workers,
        agents=agents,
        lease_ms=lease_ms,
        kill_leader=kill_leader,
        kill_worker=kill_worker,
        group_size=group_size,
        timeout_s=timeout_s,
        progress=not as_json,
        api_port=api_port,
    )
    try:
        report = run_demo(_settings(ctx), opts, echo=click.echo if not as_json else _stderr)
    except MultiswarmError as e:
        raise click.ClickException(f"{type(e).__name__}: {e}") from e
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report)
    sys.exit(0 if report["verified"] else 1)


def _stderr(msg: str) -> None:
    click.echo(msg, err=True)


# -- inspection --------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def leader(ctx: click.Context, as_json: bool) -> None:
    """Who holds the leader lease: holder, host, pid, epoch, lease_ms_left."""
    info, left = _run(ctx, lambda s, k: current_leader(s, k))
    report = leader_report(info, left)
    _emit(
        report,
        as_json,
        lambda: click.echo(
            "no leader"
            if info is None
            else f"{info.holder} (host {info.host}, pid {info.pid}) epoch {info.epoch}, "
            f"lease {left} ms left"
        ),
    )


async def _status(scripts: Scripts, keys: Keys) -> dict[str, Any]:
    registry, tasks = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    info, left = await current_leader(scripts, keys)
    now_ms = int(time.time() * 1000)
    return {
        "namespace": keys.ns,
        "leader": leader_report(info, left),
        "swarms": [
            {
                "id": s.id,
                "status": s.status,
                "capabilities": s.capabilities,
                "priority": s.prio,
                "active": s.active,
                "capacity": s.capacity,
                "hosts": s.host_workers,
                "recoveries": s.recoveries,
            }
            for s in await registry.swarms()
        ],
        "workers": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "swarms": w.swarms.split(","),
                "running": w.running,
                "beat_ms_ago": now_ms - (w.beat_ms or w.registered_ms),
            }
            for w in await registry.workers()
        ],
        "tasks": await tasks.counts(),
        "counters": await tasks.stats(),
    }


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Swarms, workers, the leader and task counts."""
    report = _run(ctx, _status)

    def table() -> None:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        ld = report["leader"]
        console.print(
            f"namespace [bold]{report['namespace']}[/]; leader: "
            + (f"{ld['holder']} epoch {ld['epoch']}" if ld["holder"] else "none")
        )
        t = Table("swarm", "status", "capabilities", "active/capacity", "hosts")
        for s in report["swarms"]:
            t.add_row(
                s["id"],
                s["status"],
                ",".join(s["capabilities"]),
                f"{s['active']}/{s['capacity']}",
                ",".join(s["hosts"]),
            )
        console.print(t)
        w = Table("worker", "host", "pid", "running", "last beat")
        for x in report["workers"]:
            w.add_row(
                x["id"],
                x["host"],
                str(x["pid"]),
                str(x["running"]),
                f"{x['beat_ms_ago'] / 1000:.1f} s ago",
            )
        console.print(w)
        console.print("tasks: " + ", ".join(f"{k} {v}" for k, v in report["tasks"].items()))

    _emit(report, as_json, table)


# -- recovery, snapshots, checkpoints, breakers, resources, votes (cli_recover, cli_ops) -------
def _register_groups() -> None:
    from multiswarm.cli_api import run_api_cmd
    from multiswarm.cli_ops import breakers, resources, votes
    from multiswarm.cli_recover import checkpoint, recover, snapshot

    for group in (recover, snapshot, checkpoint, breakers, resources, votes):
        cli.add_command(group)
    run.add_command(run_api_cmd)


_register_groups()


# -- swarm operations --------------------------------------------------------------------------
def _pause_command(paused: bool) -> click.Command:
    verb = "pause" if paused else "resume"

    @click.command(
        verb,
        help=(
            "Stop dispatch to SWARM and claims by its workers; running tasks finish, queued ones "
            "wait."
            if paused
            else "Let SWARM take work again after a pause."
        ),
    )
    @click.argument("swarm_id", metavar="SWARM")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def command(ctx: click.Context, swarm_id: str, as_json: bool) -> None:
        changed = _run(ctx, lambda s, k: SwarmRegistry(s, k).set_paused(swarm_id, paused))
        _emit(
            {"swarm": swarm_id, "paused": paused, "changed": changed},
            as_json,
            lambda: click.echo(
                f"{swarm_id} {verb}d" if changed else f"{swarm_id} was already {verb}d"
            ),
        )

    return command


cli.add_command(_pause_command(True))
cli.add_command(_pause_command(False))


@cli.command()
@click.argument("swarm_id", metavar="SWARM")
@click.argument("target", type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def scale(ctx: click.Context, swarm_id: str, target: int, as_json: bool) -> None:
    """Scale SWARM to TARGET members per hosting worker: growth split 70% Python agents / 30%
    external members, Python agents removed first, at least one of each kind kept."""

    async def call(s: Scripts, k: Keys) -> tuple[int, int]:
        try:
            return await SwarmRegistry(s, k).scale(swarm_id, target)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="TARGET") from e

    python, external = _run(ctx, call)
    _emit(
        {"swarm": swarm_id, "python": python, "external": external},
        as_json,
        lambda: click.echo(f"{swarm_id}: {python} Python agents, {external} external members"),
    )


# -- agents ------------------------------------------------------------------------------------
#: An agent is stale when its worker has not reported for this long (DESIGN.md: 30 s).
AGENT_TIMEOUT_MS = 30_000
HEALTH_NAMES = ("healthy", "degraded", "unhealthy", "dead")


@cli.group()
def agents() -> None:
    """The members of swarms (Python agents and external processes) and their health."""


@agents.command("list")
@click.option("--swarm", "swarm_id", default=None, help="Only this swarm's members.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def agents_list(ctx: click.Context, swarm_id: str | None, as_json: bool) -> None:
    """Every member as its worker last reported it; ``stale`` when that report is older than
    30 s."""
    workers = _run(ctx, lambda s, k: SwarmRegistry(s, k).workers())
    now_ms = int(time.time() * 1000)
    rows = []
    for w in workers:
        age = now_ms - (w.beat_ms or w.registered_ms)
        for agent_id, a in sorted(w.agent_states.items()):
            if swarm_id and a.get("swarm") != swarm_id:
                continue
            health = int(a.get("health", 0))
            rows.append(
                {
                    "agent": agent_id,
                    "swarm": a.get("swarm"),
                    "worker": w.id,
                    "kind": a.get("kind"),
                    "state": a.get("state"),
                    "health": HEALTH_NAMES[min(health, 3)],
                    "failures": a.get("failures", 0),
                    "restarts": a.get("restarts", 0),
                    "pid": a.get("pid"),
                    "stale": age > AGENT_TIMEOUT_MS,
                    "reported_ms_ago": age,
                }
            )

    def table() -> None:
        from rich.console import Console
        from rich.table import Table

        t = Table(
            "agent", "swarm", "worker", "kind", "state", "health", "failures", "restarts", "stale"
        )
        for r in rows:
            t.add_row(
                r["agent"],
                str(r["swarm"]),
                r["worker"],
                str(r["kind"]),
                str(r["state"]),
                r["health"],
                str(r["failures"]),
                str(r["restarts"]),
                "stale" if r["stale"] else "",
            )
        Console().print(t)

    _emit(rows, as_json, table)


# -- tasks -------------------------------------------------------------------------------------
@cli.group()
def tasks() -> None:
    """Submit, inspect and cancel tasks."""


def task_dict(t: Task, now_ms: int) -> dict[str, Any]:
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
@click.option("--priority", type=click.Choice(["high", "normal", "low"]), default="normal")
@click.option("--after", "deps", multiple=True, help="Task id this one depends on (repeatable).")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
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
    as_json: bool,
) -> None:
    """Submit one task running HANDLER (package.module:function)."""
    try:
        data = json.loads(payload)
        spec = task_spec(
            handler,
            id=task_id,
            capabilities=caps,
            priority=priority,
            depends_on=deps,
            max_attempts=max_attempts,
        )
    except (ValueError, MultiswarmError) as e:
        raise click.BadParameter(str(e)) from e
    out = _run(ctx, lambda s, k: TaskStore(s, k).submit([(spec, data)]))
    _emit(
        {"id": spec.id, "status": out[spec.id]},
        as_json,
        lambda: click.echo(f"{spec.id} {out[spec.id]}"),
    )


@tasks.command("show")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tasks_show(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """One task, with its result when completed."""

    async def fetch(s: Scripts, k: Keys) -> dict[str, Any]:
        store = TaskStore(s, k)
        t = await store.get(task_id)
        d = task_dict(t, int(time.time() * 1000))
        if t.status == "completed":
            d["result"] = await store.result(task_id)
        return d

    d = _run(ctx, fetch)

    def table() -> None:
        for k, v in d.items():
            click.echo(f"{k:>14}: {v}")

    _emit(d, as_json, table)


@tasks.command("cancel")
@click.argument("task_id")
@click.option("--reason", default="cancelled by operator", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tasks_cancel(ctx: click.Context, task_id: str, reason: str, as_json: bool) -> None:
    """Cancel a task (its dependents end cancelled too)."""
    out = _run(ctx, lambda s, k: TaskStore(s, k).cancel(task_id, reason))
    _emit({"id": task_id, "outcome": out}, as_json, lambda: click.echo(f"{task_id} {out}"))


@tasks.command("list")
@click.option(
    "--status",
    "status_",
    default=None,
    type=click.Choice(
        ["pending", "ready", "assigned", "running", "completed", "failed", "dead", "cancelled"]
    ),
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tasks_list(ctx: click.Context, status_: str | None, limit: int, as_json: bool) -> None:
    """Tasks, newest first: what is running where, with lease time left."""
    now_ms = int(time.time() * 1000)
    rows = [
        task_dict(t, now_ms) for t in _run(ctx, lambda s, k: TaskStore(s, k).list(status_, limit))
    ]

    def table() -> None:
        from rich.console import Console
        from rich.table import Table

        t = Table("id", "status", "swarm", "worker", "attempts", "lease left", "reason")
        for r in rows:
            left = f"{r['lease_ms_left'] / 1000:.1f} s" if r["lease_ms_left"] is not None else ""
            t.add_row(
                r["id"],
                r["status"],
                r["swarm"],
                r["worker"],
                f"{r['attempts']}/{r['max_attempts']}",
                left,
                r["reason"] or r["error"][:60],
            )
        Console().print(t)

    _emit(rows, as_json, table)


from multiswarm.cli_messages import messages  # noqa: E402  (it imports _run, _emit from here)

cli.add_command(messages)


def main() -> None:
    cli(prog_name="multiswarm-cli")


if __name__ == "__main__":
    main()
