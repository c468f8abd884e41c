"""What a launcher (the CLI's ``run``, ``up`` and ``demo``) needs to start processes: the role
entry points, their choices and defaults, the restart policy, the local-system helpers.

The public surface of the node layer, so front ends never reach into its modules
(``agents``, ``placement``, ``supervisor``...); the facade for a running system is
:class:`~multiswarm.api.Multiswarm`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from multiswarm.agents import DEFAULT_ALLOWED
from multiswarm.config import Settings
from multiswarm.http.config import DEFAULT_PORT as DEFAULT_API_PORT
from multiswarm.lazy import lazy_getattr
from multiswarm.logs import LOG_FORMATS, configure_logging
from multiswarm.ops.leadership import STRATEGIES
from multiswarm.placement import AGENT_STRATEGIES
from multiswarm.registry import SwarmSpec, swarm_spec
from multiswarm.roles import coordinator_role, registry_role, serve, state_manager_role, worker_role
from multiswarm.supervisor import Backoff
from multiswarm.worker_metrics import WorkerMetrics

if TYPE_CHECKING:  # loaded on first use: a role process (`run worker`) starts without them
    from multiswarm.demo import DemoOptions, print_report, run_demo
    from multiswarm.local_system import ensure_redis, start_system

#: How a coordinator leader assigns tasks to swarms (``run coordinator --strategy``).
COORDINATOR_STRATEGIES: tuple[str, ...] = STRATEGIES
#: How a worker places claimed tasks on a swarm's agents (``run worker --agent-strategy``).
PLACEMENT_STRATEGIES: tuple[str, ...] = AGENT_STRATEGIES
#: Import-path prefixes of the handlers a worker runs when given none (none: only registered
#: handlers run, multiswarm.handlers).
DEFAULT_ALLOWED_HANDLERS: tuple[str, ...] = DEFAULT_ALLOWED
#: How a dead swarm member is restarted: ``RestartPolicy(base_s, attempts, cooldown_s,
#: probation_s)``.
RestartPolicy = Backoff

__all__ = [
    "COORDINATOR_STRATEGIES",
    "DEFAULT_ALLOWED_HANDLERS",
    "DEFAULT_API_PORT",
    "LOG_FORMATS",
    "PLACEMENT_STRATEGIES",
    "DemoOptions",
    "RestartPolicy",
    "SwarmSpec",
    "WorkerMetrics",
    "configure_logging",
    "coordinator_role",
    "ensure_redis",
    "parse_swarm",
    "print_report",
    "registry_role",
    "run_demo",
    "serve",
    "serve_api",
    "start_system",
    "state_manager_role",
    "swarm_spec",
    "worker_role",
]


def parse_swarm(text: str) -> SwarmSpec:
    """``ID[:cap1+cap2[:agents[:priority]]]`` -> a swarm definition (``run worker --swarm``,
    ``up --swarm``); agents default to 2, priority to ``normal``, capacity to
    :func:`swarm_spec`'s floor.

    Raises
    ------
    ValueError
        ``agents`` is not an integer.
    InvalidIdError, BadRequest
        Malformed id, capability or priority.
    """
    parts = text.split(":")
    caps = [c for c in parts[1].split("+") if c] if len(parts) > 1 else []
    agents = int(parts[2]) if len(parts) > 2 and parts[2] else 2
    priority = parts[3] if len(parts) > 3 else "normal"
    return swarm_spec(parts[0], caps, agents=agents, priority=priority)


def serve_api(
    settings: Settings,
    host: str,
    port: int,
    open_scrape: bool,
    echo: Callable[[str], None],
    forwarded_allow_ips: str = "127.0.0.1",
) -> None:
    """Run the operations API (``run api``: JSON API, ``/metrics``, dashboard) until SIGTERM,
    with the tokens of ``$MULTISWARM_API_TOKEN`` / ``$MULTISWARM_API_READ_TOKEN``, believing
    the ``X-Forwarded-*`` headers of the proxies ``forwarded_allow_ips`` (uvicorn's setting:
    comma-separated addresses or ``*``).

    Starlette and uvicorn are imported here, not with this module, so other commands do not
    pay for them.

    Raises
    ------
    ConfigError
        A malformed token; no token and a non-loopback ``host``; the port cannot be bound.
    RedisUnavailable
        Redis does not answer at start.
    """
    from multiswarm.http.auth import tokens_from_env
    from multiswarm.http.server import serve_api as serve_http

    tokens = tokens_from_env(open_scrape=open_scrape)
    serve_http(settings, host, port, tokens, echo, forwarded_allow_ips=forwarded_allow_ips)


#: Names of modules only ``up`` and ``demo`` need -> their module, imported on first access.
_LAZY = {
    "DemoOptions": "multiswarm.demo",
    "print_report": "multiswarm.demo",
    "run_demo": "multiswarm.demo",
    "ensure_redis": "multiswarm.local_system",
    "start_system": "multiswarm.local_system",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
