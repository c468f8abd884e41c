"""Process commands of ``multiswarm-cli``: ``run <role>``, ``up`` (a local system) and ``demo``.

They start processes through :mod:`multiswarm.node_api`; registered on the root by ``cli.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from multiswarm import MultiswarmError
from multiswarm import node_api as node
from multiswarm.cli_common import as_json, failure, option, settings_of, usage_failure
from multiswarm.cli_stopping import StopSignals
from multiswarm.config import MAX_PREFETCH, Settings
from multiswarm.urls import redact


def _swarms(texts: tuple[str, ...]) -> list[node.SwarmSpec]:
    try:
        return [node.parse_swarm(s) for s in texts]
    except (ValueError, MultiswarmError) as e:
        raise click.BadParameter(str(e), param_hint="--swarm") from e


def _concurrency_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--concurrency",
        type=click.IntRange(1, 1024),
        default=None,
        help="Tasks each agent process runs at once [default: MULTISWARM_AGENT_CONCURRENCY or 1].",
    )(f)


def _prefetch_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--prefetch",
        type=click.IntRange(0, MAX_PREFETCH),
        default=None,
        help="Tasks held claimed per agent slot beyond those running; 0 for tasks that run "
        "for minutes [default: MULTISWARM_AGENT_PREFETCH or 2].",
    )(f)


def _lease_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--lease-ms",
        type=click.IntRange(min=300),
        envvar="MULTISWARM_LEASE_MS",
        default=None,
        help="Leader lease [default: 30000].",
    )(f)


#: A duration in seconds, not negative.
_S = click.FloatRange(0)
#: A time limit in seconds, above zero.
_POSITIVE_S = click.FloatRange(0, min_open=True)
_allow_handlers = click.option(
    "--allow-handlers",
    multiple=True,
    metavar="PREFIX",
    help="Opt-in: let workers run any function under this import-path prefix, e.g. myapp. "
    "(repeatable) [default: none, only registered handlers].",
)
_imports = click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Module whose @multiswarm.handler functions the workers run, e.g. myapp.tasks "
    "(repeatable).",
)


@click.group()
def run() -> None:
    """Run one role in this process until SIGTERM (clean shutdown)."""
    # A SIGTERM that arrives while the role is still starting (nothing claimed or led yet) is a
    # clean exit too; serve() installs the real handler once the event loop runs.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(0))


@run.command("registry")
@click.pass_context
def run_registry_cmd(ctx: click.Context) -> None:
    """Expire missed heartbeats, archive finished swarms, prune old tasks."""
    node.serve(node.registry_role(settings_of(ctx)))


@run.command("coordinator")
@_lease_option
@option(
    "--strategy",
    "least_loaded",
    "How the leader assigns tasks to swarms.",
    type=click.Choice(node.COORDINATOR_STRATEGIES),
)
@click.option("--id", "holder_id", default=None, help="Contender id [default: host-pid-rand].")
@click.pass_context
def run_coordinator_cmd(
    ctx: click.Context, lease_ms: int | None, strategy: str, holder_id: str | None
) -> None:
    """Contend for leadership; as leader dispatch tasks and requeue expired leases."""
    settings = settings_of(ctx)
    if lease_ms:
        settings = settings.replace(lease_ms=lease_ms)
    try:
        node.serve(node.coordinator_role(settings, strategy, holder_id))
    except MultiswarmError as e:  # e.g. its --id is taken by a live coordinator
        raise click.ClickException(str(e)) from e


@run.command("state-manager")
@click.pass_context
def run_state_cmd(ctx: click.Context) -> None:
    """Automatic snapshots of active swarms (SNAPSHOT_INTERVAL), and automatic recovery of
    interrupted swarms whose best plan reaches MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE (0.75);
    the rest wait for `multiswarm-cli recover`."""
    node.serve(node.state_manager_role(settings_of(ctx)))


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
@_imports
@_allow_handlers
@option(
    "--grace-s",
    10.0,
    "On SIGTERM, how long in-flight tasks may finish before being handed back.",
    type=_S,
)
@option(
    "--agent-strategy",
    "least_loaded",
    "How claimed tasks are placed on a swarm's agents.",
    type=click.Choice(node.PLACEMENT_STRATEGIES),
)
@option(
    "--memory-mb", 28, "The node's memory pool (64 KiB regions).", type=click.IntRange(1, 1 << 20)
)
@click.option(
    "--external",
    "externals",
    multiple=True,
    metavar="SWARM=COMMAND",
    help="Run COMMAND (any executable) as an external member of SWARM, supervised "
    "like the Python agents (repeatable).",
)
@option(
    "--restart-base-s", 5.0, "First restart delay of a dead member; doubles per attempt.", type=_S
)
@option("--restart-attempts", 3, type=click.IntRange(1, 20))
@_concurrency_option
@_prefetch_option
@option(
    "--restart-cooldown-s", 60.0, "Wait before replacing a member whose restarts failed.", type=_S
)
@option(
    "--probation-s",
    2.0,
    "A restarted member must stay up this long for the restart to count.",
    type=_S,
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve this worker's histograms (run time, queue wait, claim batch) on /metrics "
    "(0: a free port, printed at start).",
)
@option("--metrics-host", "127.0.0.1", "Address of --metrics-port.")
@click.pass_context
def run_worker_cmd(
    ctx: click.Context,
    swarms: tuple[str, ...],
    worker_id: str | None,
    imports: tuple[str, ...],
    allow_handlers: tuple[str, ...],
    grace_s: float,
    agent_strategy: str,
    memory_mb: int,
    externals: tuple[str, ...],
    restart_base_s: float,
    restart_attempts: int,
    concurrency: int | None,
    prefetch: int | None,
    restart_cooldown_s: float,
    probation_s: float,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Host swarms; their agents claim and run tasks.

    It runs the handlers registered (``@multiswarm.handler``) in the ``--import`` modules,
    imported with the current directory first on the import path (as ``rq worker`` does), so
    a worker started beside ``myapp/`` finds ``myapp.tasks``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # agent processes (spawn) inherit sys.path
    specs = _swarms(swarms)
    external = dict(e.split("=", 1) for e in externals if "=" in e)
    if len(external) != len(externals) or not set(external) <= {s.id for s in specs}:
        raise click.BadParameter(
            "expected SWARM=COMMAND for a swarm given with --swarm", param_hint="--external"
        )
    metrics = None
    if metrics_port is not None:
        metrics = node.WorkerMetrics()
        click.echo(f"worker metrics: {metrics.serve(metrics_port, metrics_host)}")
    node.serve(
        node.worker_role(
            settings_of(ctx),
            specs,
            worker_id=worker_id,
            allowed_handlers=allow_handlers or node.DEFAULT_ALLOWED_HANDLERS,
            imports=imports,
            grace_s=grace_s,
            agent_strategy=agent_strategy,
            pool_bytes=memory_mb * 1024 * 1024,
            concurrency=concurrency,
            prefetch=prefetch,
            external=external,
            backoff=node.RestartPolicy(
                base_s=restart_base_s,
                attempts=restart_attempts,
                cooldown_s=restart_cooldown_s,
                probation_s=probation_s,
            ),
            metrics=metrics,
        ),
        grace_s=grace_s,
    )


@click.command()
@option("--workers", 2, type=click.IntRange(1, 64))
@option("--swarms", 3, type=click.IntRange(1, 100))
@option("--agents", 2, "Agent processes per swarm.", type=click.IntRange(1, 64))
@_lease_option
@_concurrency_option
@_prefetch_option
@option("--strategy", "capability", type=click.Choice(node.COORDINATOR_STRATEGIES))
@_imports
@_allow_handlers
@click.option(
    "--swarm",
    "user_swarms",
    multiple=True,
    metavar="ID:CAPS:AGENTS[:PRIO]",
    help="One more swarm for the workers to host, e.g. parsers:parse:4:high (repeatable).",
)
@option(
    "--api-port",
    node.DEFAULT_API_PORT,
    "Port of the operations API and dashboard on 127.0.0.1 (`run api`; 0: a free one, "
    "printed by the API).",
    type=click.IntRange(0, 65535),
)
@click.option("--no-api", is_flag=True, help="Do not start the operations API.")
@click.pass_context
def up(
    ctx: click.Context,
    workers: int,
    swarms: int,
    agents: int,
    lease_ms: int | None,
    concurrency: int | None,
    prefetch: int | None,
    strategy: str,
    imports: tuple[str, ...],
    allow_handlers: tuple[str, ...],
    user_swarms: tuple[str, ...],
    api_port: int,
    no_api: bool,
) -> None:
    """Start a local system (registry, two coordinators, state manager, workers, the operations
    API on 127.0.0.1:8700) until Ctrl-C.

    Workers import handlers from the directory `up` starts in. With no Redis configured and
    none answering on localhost:6379, a private redis-server is started in a temp dir and
    stopped on exit.
    """
    settings = settings_of(ctx)
    if lease_ms:  # given: it must agree with the deployment's (multiswarm.deployment)
        settings = settings.replace(lease_ms=lease_ms, explicit=settings.explicit | {"lease_ms"})
    _swarms(user_swarms)
    worker_args = ["--concurrency", str(concurrency)] if concurrency else []
    worker_args += ["--prefetch", str(prefetch)] if prefetch is not None else []
    worker_args += [a for module in imports for a in ("--import", module)]
    worker_args += [a for prefix in allow_handlers for a in ("--allow-handlers", prefix)]
    stop = StopSignals()
    try:
        with node.ensure_redis(settings, echo=click.echo) as settings:
            try:  # (timings that disagree with the deployment's, Redis unreachable: one line)
                asyncio.run(_answers(settings))  # a signal meanwhile ends `up` at once
                stop.hold()  # from here on processes exist: a signal is polled below
                group = node.start_system(
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
            except MultiswarmError as e:
                raise failure(e) from e
            click.echo(
                f"multiswarm up: {len(group.children)} processes on "
                f"{redact(settings.redis_url)} (namespace {settings.namespace}); Ctrl-C or "
                "SIGTERM to stop"
            )
            # the API is optional: if it cannot start (port taken) the system runs on without it
            roles = [c for c in group.children if c.name != "api"]
            try:
                while not stop.received and all(c.alive() for c in roles):
                    time.sleep(0.2)
                # a role that died unasked: its failure is this command's
                dead = None if stop.received else next(c for c in roles if not c.alive())
            finally:
                click.echo(f"stopped: {group.stop_all()}")
    except KeyboardInterrupt:  # raised by `stop` before anything was started
        click.echo(f"up: stopped by {stop.name} before the system started")
        return
    if dead is not None:
        raise click.ClickException(f"{dead.name} {_ended(dead.proc.returncode)}; stopped the rest")


def _ended(code: int) -> str:
    """``exited with 3``, or ``was killed by SIGKILL`` for a process a signal ended."""
    if code < 0 and -code in {s.value for s in signal.Signals}:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with {code}"


async def _answers(settings: Settings) -> None:
    """Return once Redis answers and the settings agree with the deployment's timings."""
    from multiswarm.api import Multiswarm

    await (await Multiswarm.connect(settings=settings)).close()


@click.command()
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Directory of .py files [default: this Python's standard library].",
)
@option("--swarms", 3, type=click.IntRange(3, 50))
@option("--workers", 2, type=click.IntRange(2, 16))
@option("--agents", 2, "Agent processes per swarm.", type=click.IntRange(1, 16))
@option(
    "--lease-ms",
    3000,
    "Leader lease (short: a failover fits in the run).",
    type=click.IntRange(min=500),
)
@click.option("--kill-leader", is_flag=True, help="SIGKILL the leader mid-run.")
@click.option(
    "--kill-worker", is_flag=True, help="SIGKILL a worker mid-run and start a replacement."
)
@option("--group-size", 50, "Files merged by one reduce task.", type=click.IntRange(1, 10_000))
@option("--timeout-s", 900.0, "Give up (and fail) after this many seconds.", type=_POSITIVE_S)
@click.option(
    "--keep-logs", is_flag=True, help="Keep the roles' log files (a failed run always keeps them)."
)
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Also run the operations API and dashboard on 127.0.0.1 at this port.",
)
@click.pass_context
def demo(ctx: click.Context, /, **options: Any) -> None:
    """Count identifiers and compression ratios of a source tree with swarms in many processes.

    Exits non-zero unless the merged result equals the single-process computation. With
    --json: one JSON object at the end, progress on stderr.
    """
    quiet = as_json(ctx)
    opts = node.DemoOptions(**options, progress=not quiet)
    settings = settings_of(ctx)
    if settings.partitions > 1 and opts.swarms < settings.partitions + 3:
        raise usage_failure(
            f"--swarms {opts.swarms}: with {settings.partitions} partitions the demo needs at "
            f"least {settings.partitions + 3} swarms, so that each partition holds every kind"
        )
    stop = StopSignals()  # a signal unwinds the demo, whose `finally` blocks stop it all
    try:
        report = node.run_demo(settings, opts, echo=_stderr if quiet else click.echo)
    except MultiswarmError as e:
        raise failure(e) from e
    except KeyboardInterrupt:
        raise click.ClickException(
            f"demo stopped by {stop.name}; its processes are stopped"
        ) from None
    if quiet:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        node.print_report(report)
    sys.exit(0 if report["verified"] else 1)


def _stderr(msg: str) -> None:
    click.echo(msg, err=True)
