"""Entry points of each role when run as its own process, with clean SIGTERM handling.

``multiswarm-cli run <role>`` calls :func:`serve` with one of the ``*_role`` coroutines: SIGTERM or
SIGINT sets the stop event, the role finishes its shutdown (a leader releases its lease, a worker
drains and hands back tasks) and the process exits 0. A role that fails instead (a worker whose
loop raised: :class:`~multiswarm.errors.WorkerFailed`) ends the process with exit code 1 and a
one-line error as the last line on stderr, so a supervisor (systemd, Kubernetes) restarts it.

Shutdown is bounded whatever Redis does: once signalled, a role has its grace (a worker's
``--grace-s``; 0 for the others) plus :data:`SHUTDOWN_MARGIN_S` to finish. A role still busy
then (Redis down or stopped: every command waits out its reconnect window) is abandoned: its
agent processes are killed and the process exits 1 with one line saying so, in time for
Kubernetes' 30 s and systemd's 90 s before they SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from multiswarm.config import Settings
from multiswarm.connection import connect, verify
from multiswarm.deployment import agree
from multiswarm.errors import MultiswarmError
from multiswarm.keys import Keys
from multiswarm.partitions import partition_keys
from multiswarm.registry import SwarmSpec
from multiswarm.scripts import Scripts
from multiswarm.worker_partitions import run_workers

if TYPE_CHECKING:  # the other roles' modules load in their role: a worker starts without them
    from multiswarm.partition_leaders import PartitionRun

log = logging.getLogger(__name__)

Role = Callable[[asyncio.Event], Awaitable[None]]

#: Time a signalled role has beyond its grace to finish its shutdown, in seconds; the process
#: then exits within about one more second.
SHUTDOWN_MARGIN_S = 4.0


def serve(role: Role, grace_s: float = 0.0) -> None:
    """Run ``role`` until SIGTERM/SIGINT, then let it shut down cleanly within
    ``grace_s`` + :data:`SHUTDOWN_MARGIN_S` seconds.

    Parameters
    ----------
    role:
        The role's coroutine function; it returns once ``stop`` is set and its shutdown done.
    grace_s:
        The role's own shutdown allowance (a worker's in-flight tasks), in seconds.

    Raises
    ------
    SystemExit
        With code 1 when the role failed, or did not finish within the bound (then the
        process ends at once, its agent processes killed); the error is the last line
        written to stderr (an unexpected exception's traceback is logged before it).
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        running = asyncio.ensure_future(role(stop))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not running.done():
            await asyncio.wait([running], timeout=grace_s + SHUTDOWN_MARGIN_S)
        if not running.done():
            _abandon(f"shutdown did not finish within {grace_s + SHUTDOWN_MARGIN_S:.0f} s "
                     "(is Redis reachable?); exiting with work possibly not handed back")  # fmt: skip
        await running

    try:
        asyncio.run(main())
    except Exception as e:
        if not isinstance(e, MultiswarmError):  # a bug: keep its traceback for the report
            log.error("role failed", exc_info=e)
        line = " ".join(f"{e}".split()) or type(e).__name__
        if not isinstance(e, MultiswarmError):
            line = f"{type(e).__name__}: {line}"
        print(f"multiswarm: error: {line}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def _abandon(line: str) -> None:
    """End the process now: kill its agent processes, write ``line`` last on stderr, exit 1.

    ``os._exit``, because an orderly exit would wait for the very tasks and threads that are
    stuck on Redis (asyncio.run cancels and awaits every task, then joins executor threads)."""
    for child in multiprocessing.active_children():
        child.kill()
    # the node's input pool, which close() would have unlinked (none if never imported)
    memory = sys.modules.get("multiswarm.kernels.memory")
    if memory is not None:
        memory.unlink_shared_segments()
    logging.shutdown()
    sys.stdout.flush()
    print(f"multiswarm: error: {line}", file=sys.stderr, flush=True)
    os._exit(1)


async def agreed(settings: Settings) -> Settings:
    """``settings`` once Redis answers, with the deployment's timings (multiswarm.deployment).

    Raises
    ------
    ConfigError
        The URL cannot work, or a timing given explicitly conflicts with the deployment's.
    RedisUnavailable
        Redis did not answer within the reconnect window.
    """
    client = connect(settings)
    try:
        await verify(client, settings.redis_url, settings.reconnect_timeout_s)
        return await agree(client, settings)
    finally:
        await client.aclose()


async def _open(settings: Settings) -> tuple[Settings, Scripts, list[Keys]]:
    """Settings agreed with the deployment, scripts on a new client, and the keys of every
    partition (index = partition number; one entry when P = 1)."""
    settings = await agreed(settings)
    scripts = Scripts.for_settings(connect(settings), settings)
    return settings, scripts, partition_keys(settings)


def registry_role(config: Settings) -> Role:
    """Reaps dead workers and keeps house in every partition (one loop pair each)."""

    async def role(stop: asyncio.Event) -> None:
        from multiswarm.registry import SwarmRegistry
        from multiswarm.services import run_registry

        settings, scripts, parts = await _open(config)

        def run(keys: Keys) -> PartitionRun:
            registry = SwarmRegistry(scripts, keys, settings.max_swarms)
            return lambda partition_stop: run_registry(
                registry,
                partition_stop,
                heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
                archive_ms=settings.archive_ms,
                result_ttl_ms=settings.result_ttl_ms,
            )

        try:
            await _serve_partitions([run(k) for k in parts], stop)
        finally:
            await scripts.client.aclose()

    return role


def coordinator_role(config: Settings, strategy: str, holder_id: str | None = None) -> Role:
    """Contends for the leader lease of every partition, sharing them with the other
    coordinators (:class:`~multiswarm.partition_leaders.PartitionLeaders`, decision 45)."""

    async def role(stop: asyncio.Event) -> None:
        from multiswarm.coordinator import SwarmCoordinator, default_holder_id
        from multiswarm.coordinator_process import run_coordinator
        from multiswarm.partition_leaders import PartitionLeaders

        settings, scripts, parts = await _open(config)
        holder = holder_id or default_holder_id()
        coordinators = [
            SwarmCoordinator(
                scripts,
                keys,
                lease_ms=settings.lease_ms,
                strategy=strategy,
                holder_id=holder,
                heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
            )
            for keys in parts
        ]
        log.info(
            "coordinator %s (lease %d ms, strategy %s, %d partitions)",
            holder,
            settings.lease_ms,
            strategy,
            len(parts),
        )
        try:
            if len(coordinators) == 1:
                await run_coordinator(coordinators[0], stop)
            else:
                await PartitionLeaders(coordinators, parts[0]).run(stop)
        finally:
            await scripts.client.aclose()

    return role


def state_manager_role(config: Settings) -> Role:
    """Snapshots and recovers the swarms of every partition (one loop each)."""

    async def role(stop: asyncio.Event) -> None:
        from multiswarm.services import run_state_manager
        from multiswarm.state import SwarmStateManager

        settings, scripts, parts = await _open(config)

        def run(keys: Keys) -> PartitionRun:
            manager = SwarmStateManager(
                scripts,
                keys,
                ttl_ms=settings.state_ttl_ms,
                snapshots_kept=settings.snapshots_kept,
                auto_recover_min_confidence=settings.auto_recover_min_confidence,
            )
            return lambda partition_stop: run_state_manager(
                manager, partition_stop, settings.snapshot_interval_ms
            )

        try:
            await _serve_partitions([run(k) for k in parts], stop)
        finally:
            await scripts.client.aclose()

    return role


async def _serve_partitions(runs: Sequence[PartitionRun], stop: asyncio.Event) -> None:
    # one partition: its loop alone, exactly as before partitions
    if len(runs) == 1:
        await runs[0](stop)
    else:
        from multiswarm.partition_leaders import run_partitions

        await run_partitions(runs, stop)


def worker_role(settings: Settings, swarms: Sequence[SwarmSpec], **options: Any) -> Role:
    """``options`` are :class:`~multiswarm.worker.Worker` keyword arguments. The swarms may
    live in several partitions: one Worker per partition (decision 46)."""

    async def role(stop: asyncio.Event) -> None:
        await run_workers(await agreed(settings), swarms, stop, **options)

    return role
