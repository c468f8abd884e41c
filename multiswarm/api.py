"""The asyncio facade: one object for applications, the CLI and the HTTP API.

>>> ms = await Multiswarm.connect("redis://127.0.0.1:6379/0")
>>> await ms.create_swarm("parsers", ["parse"], agents=4)
>>> tid = await ms.distribute_task("myapp.tasks:parse", {"path": "a.py"}, capabilities=["parse"])
>>> result = await ms.wait_for(tid, timeout_s=60)

Each method is a plain async function of a facade module (``swarms_api``, ``tasks_api``,
``ops_api``, ``recovery_api``, ``messaging_api``) bound here, so its signature and numpydoc
live in one place: ``help(Multiswarm.status)`` shows them. Every reply is a msgspec Struct (records of
:mod:`multiswarm.messages`, views of :mod:`multiswarm.api_types`), so
``msgspec.json.encode(await ms.status())`` is the HTTP body; every error a
:class:`~multiswarm.errors.MultiswarmError`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from multiswarm import messaging_api, ops_api, recovery_api, swarms_api, tasks_api
from multiswarm.api_types import Part
from multiswarm.config import Settings, from_env
from multiswarm.connection import Client, connect, verify
from multiswarm.deployment import agree
from multiswarm.keys import Keys
from multiswarm.partition_api import PartitionHost
from multiswarm.partition_routes import Routes
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from multiswarm.tasks import TaskStore


class Multiswarm:
    """Client of one deployment (Redis URL + namespace). Create with :meth:`connect`.

    Parameters
    ----------
    client, settings:
        An open client and the settings it was made from.
    actor:
        Who this client acts as in recovery logs [default: ``<host>-<pid>``].

    With ``settings.partitions`` P > 1 (decision 44) its own ``keys``, ``registry``,
    ``tasks`` and ``state`` are partition 0's (the control slot: votes, breakers, messages,
    the deployment record), ``parts[k]`` holds partition ``k``'s, and every method routes to
    the partition of the swarm or task it names, or reads them all (decision 47).
    """

    def __init__(self, client: Client, settings: Settings, *, actor: str = "") -> None:
        self.settings = settings
        self.client = client
        self.actor = actor or f"{socket.gethostname()}-{os.getpid()}"
        self.keys = Keys(settings.namespace, 0, settings.partitions)
        self.scripts = Scripts.for_settings(client, settings)
        self.registry = SwarmRegistry(self.scripts, self.keys, settings.max_swarms)
        self.tasks = TaskStore(self.scripts, self.keys)
        self.state = SwarmStateManager(
            self.scripts,
            self.keys,
            ttl_ms=settings.state_ttl_ms,
            snapshots_kept=settings.snapshots_kept,
        )
        self.routes = Routes(settings.partitions)
        self.parts: Sequence[Part] = [self] + [
            PartitionHost(client, settings, self.scripts, keys, self.actor)
            for keys in Keys.all(settings.namespace, settings.partitions)[1:]
        ]

    @classmethod
    async def connect(
        cls,
        redis_url: str | None = None,
        namespace: str | None = None,
        settings: Settings | None = None,
        *,
        actor: str = "",
    ) -> Multiswarm:
        """Connect and check that Redis answers.

        Parameters
        ----------
        redis_url, namespace:
            Override ``$MULTISWARM_REDIS_URL`` / ``$MULTISWARM_NAMESPACE``.
        settings:
            Use these instead of the environment (then ``redis_url`` and ``namespace`` are
            ignored).

        Raises
        ------
        ConfigError
            Malformed settings or URL, a URL the server refuses (database, cluster mode,
            credentials), or a timing set explicitly that conflicts with the deployment's
            (multiswarm.deployment: the deployment's timings are adopted otherwise).
        RedisUnavailable
            No answer within ``settings.reconnect_timeout_s`` seconds.
        """
        settings = settings or from_env(redis_url=redis_url, namespace=namespace)
        client = connect(settings)
        try:
            await verify(client, settings.redis_url, settings.reconnect_timeout_s)
            settings = await agree(client, settings, store=False)
        except BaseException:
            await client.aclose()
            raise
        return cls(client, settings, actor=actor)

    async def close(self) -> None:
        """Stop the messengers this facade made and close the connection pool."""
        await messaging_api.close_messengers(self)
        await self.client.aclose()

    async def __aenter__(self) -> Multiswarm:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- swarms (swarms_api) --------------------------------------------------------------------
    create_swarm = swarms_api.create_swarm
    list_swarms = swarms_api.list_swarms
    get_swarm = swarms_api.get_swarm
    pause_swarm = swarms_api.pause_swarm
    resume_swarm = swarms_api.resume_swarm
    scale_swarm = swarms_api.scale_swarm
    complete_swarm = swarms_api.complete_swarm
    fail_swarm = swarms_api.fail_swarm
    delete_swarm = swarms_api.delete_swarm
    resolve_swarm_id = swarms_api.resolve_swarm_id

    # -- tasks (tasks_api) ----------------------------------------------------------------------
    distribute_task = tasks_api.distribute_task
    submit_task = tasks_api.submit_task
    submit_tasks = tasks_api.submit_tasks
    list_tasks = tasks_api.list_tasks
    get_task = tasks_api.get_task
    resolve_task_id = tasks_api.resolve_task_id
    get_result = tasks_api.get_result
    cancel_task = tasks_api.cancel_task
    retry_tasks = tasks_api.retry_tasks
    purge_tasks = tasks_api.purge_tasks
    wait_for = tasks_api.wait_for
    result = tasks_api.result

    # -- operations (ops_api) -------------------------------------------------------------------
    status = ops_api.status
    leader = ops_api.leader
    health = ops_api.health
    statistics = ops_api.statistics
    list_workers = ops_api.list_workers
    list_agents = ops_api.list_agents
    list_breakers = ops_api.list_breakers
    reset_breaker = ops_api.reset_breaker
    reset_breakers = ops_api.reset_breakers
    list_resources = ops_api.list_resources
    init_resource_pool = ops_api.init_resource_pool
    release_resources = ops_api.release_resources
    list_votes = ops_api.list_votes
    get_vote = ops_api.get_vote
    deployment = ops_api.deployment
    configure_deployment = ops_api.configure_deployment

    # -- state and recovery (recovery_api) ------------------------------------------------------
    save_state = recovery_api.save_state
    load_state = recovery_api.load_state
    create_snapshot = recovery_api.create_snapshot
    create_checkpoint = recovery_api.create_checkpoint
    list_recovery_points = recovery_api.list_recovery_points
    restore_recovery_point = recovery_api.restore_recovery_point
    quarantined = recovery_api.quarantined
    list_recoveries = recovery_api.list_recoveries
    plan_recoveries = recovery_api.plan_recoveries
    plan_recovery = recovery_api.plan_recovery
    apply_recovery = recovery_api.apply_recovery
    apply_recoveries = recovery_api.apply_recoveries
    recover_swarm = recovery_api.recover_swarm
    recovery_log = recovery_api.recovery_log

    # -- messages (messaging_api) ---------------------------------------------------------------
    get_messenger = messaging_api.get_messenger
    send_message = messaging_api.send_message
    broadcast = messaging_api.broadcast
    send_to_agent = messaging_api.send_to_agent
    request = messaging_api.request
    tail = messaging_api.tail
    dead_letters = messaging_api.dead_letters
