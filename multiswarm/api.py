"""The asyncio facade: one object for applications.

>>> ms = await Multiswarm.connect("redis://127.0.0.1:6379/0")
>>> await ms.create_swarm("parsers", ["parse"], agents=4)
>>> tid = await ms.distribute_task("myapp.tasks:parse", {"path": "a.py"}, capabilities=["parse"])
>>> result = await ms.wait_for(tid, timeout_s=60)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from typing import Any

from multiswarm import messaging_api
from multiswarm.config import Settings, from_env
from multiswarm.connection import Client, connect
from multiswarm.coordinator import current_leader, leader_report
from multiswarm.errors import TaskFailed
from multiswarm.keys import Keys
from multiswarm.messages import Envelope, Swarm, Task
from multiswarm.messenger import Sent, SwarmMessenger
from multiswarm.recovery import SwarmRecovery
from multiswarm.recovery_plan import RecoveryOutcome, RecoveryPlan
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.state import StateRecord, SwarmStateManager
from multiswarm.tasks import TaskStore, task_spec

#: Longest blocking read of :meth:`Multiswarm.wait_for` before the record is read again, in
#: seconds: the safety net for tasks that end without a completion (dead, cancelled).
SAFETY_NET_S = 1.0


class Multiswarm:
    """Client of one deployment (Redis URL + namespace). Create with :meth:`connect`."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.settings = settings
        self.client = client
        self.keys = Keys(settings.namespace)
        self.scripts = Scripts(client, settings.reconnect_timeout_s)
        self.registry = SwarmRegistry(self.scripts, self.keys, settings.max_swarms)
        self.tasks = TaskStore(self.scripts, self.keys)
        self.state = SwarmStateManager(
            self.scripts,
            self.keys,
            ttl_ms=settings.state_ttl_ms,
            snapshots_kept=settings.snapshots_kept,
        )

    @classmethod
    async def connect(
        cls,
        redis_url: str | None = None,
        namespace: str | None = None,
        settings: Settings | None = None,
    ) -> Multiswarm:
        """Connect (settings from the environment unless given). Raises ConfigError."""
        settings = settings or from_env(redis_url=redis_url, namespace=namespace)
        client = connect(settings)
        await client.ping()
        return cls(client, settings)

    async def close(self) -> None:
        await messaging_api.close_messengers(self)
        await self.client.aclose()

    async def __aenter__(self) -> Multiswarm:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create_swarm(
        self,
        swarm_id: str,
        capabilities: Iterable[str] = (),
        *,
        priority: str = "normal",
        agents: int = 4,
        objective: str = "",
    ) -> str:
        """Register a swarm (``initializing`` until a worker hosts it). ``created``/``exists``."""
        return await self.registry.register_swarm(
            swarm_spec(
                swarm_id, capabilities, priority=priority, agents=agents, objective=objective
            )
        )

    async def get_swarm(self, swarm_id: str) -> Swarm:
        return await self.registry.get(swarm_id)

    async def distribute_task(self, handler: str, payload: Any = None, **options: Any) -> str:
        """Submit one task; options as :func:`multiswarm.tasks.task_spec`, ``lease_ms``
        defaulting to ``settings.task_lease_ms`` (``MULTISWARM_TASK_LEASE_MS``). Returns its id.
        """
        options.setdefault("lease_ms", self.settings.task_lease_ms)
        spec = task_spec(handler, **options)
        await self.tasks.submit([(spec, payload)])
        return spec.id

    async def get_task(self, task_id: str) -> Task:
        return await self.tasks.get(task_id)

    async def cancel_task(self, task_id: str, reason: str = "cancelled") -> str:
        return await self.tasks.cancel(task_id, reason)

    async def wait_for(self, task_id: str, timeout_s: float = 60.0) -> Any:
        """The task's result once completed, waiting without polling.

        Blocks on the completions stream (``XREAD BLOCK``), so a completion wakes the waiter at
        once; the record is read again at least every :data:`SAFETY_NET_S` (1 s), because a
        task that ends dead or cancelled adds no completion entry.

        Parameters
        ----------
        task_id:
            The id :meth:`distribute_task` returned.
        timeout_s:
            Longest wait, in seconds.

        Raises
        ------
        TaskFailed
            It ended dead or cancelled.
        TimeoutError
            Not finished within ``timeout_s``.
        NotFound
            No such task.
        """
        deadline = time.monotonic() + timeout_s
        stream = self.keys.completions
        tip: Any = await self.scripts.read(lambda: self.client.xrevrange(stream, count=1))
        cursor: bytes | str = tip[0][0] if tip else "0-0"
        wanted = task_id.encode()
        while True:
            task = await self.tasks.get(task_id)
            if task.status == "completed":
                return await self.tasks.result(task_id)
            if task.status in ("dead", "cancelled"):
                raise TaskFailed(task)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {task_id} still {task.status} after {timeout_s} s")
            block_ms = max(1, int(min(left, SAFETY_NET_S) * 1000))
            read: Any = await self.scripts.read(
                functools.partial(self.client.xread, {stream: cursor}, count=1000, block=block_ms)
            )
            for _stream, entries in read or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    if fields.get(b"task") == wanted:
                        break  # completed: the record says so now

    async def result(self, task_id: str, timeout_s: float = 60.0) -> Any:
        """``await ms.result(task_id)``: the same as :meth:`wait_for`."""
        return await self.wait_for(task_id, timeout_s)

    async def save_state(
        self, swarm_id: str, data: dict[str, Any], expected_version: int | None = None
    ) -> int:
        return await self.state.save_state(swarm_id, data, expected_version)

    async def load_state(self, swarm_id: str) -> StateRecord | None:
        return await self.state.load_state(swarm_id)

    async def create_snapshot(self, swarm_id: str, label: str = "manual") -> int:
        return await self.state.create_snapshot(swarm_id, label)

    async def plan_recovery(self, swarm_id: str, source: str | None = None) -> RecoveryPlan:
        """Dry run: chosen source, confidence, tasks to re-queue (see docs/recovery.md)."""
        return await SwarmRecovery(self.state).plan(swarm_id, source)

    async def recover_swarm(
        self, swarm_id: str, source: str | None = None, min_confidence: float | None = None
    ) -> RecoveryOutcome:
        """Plan and apply; applying twice does nothing the second time."""
        return await SwarmRecovery(self.state).recover(swarm_id, source, min_confidence)

    async def scale_swarm(self, swarm_id: str, target: int) -> tuple[int, int]:
        """Members per hosting worker; returns the ``(python, external)`` split (70/30)."""
        return await self.registry.scale(swarm_id, target)

    async def pause_swarm(self, swarm_id: str) -> bool:
        return await self.registry.set_paused(swarm_id, True)

    async def resume_swarm(self, swarm_id: str) -> bool:
        return await self.registry.set_paused(swarm_id, False)

    def get_messenger(self, swarm_id: str, **options: Any) -> SwarmMessenger:
        """The messenger of one swarm (its channel, history, request/response)."""
        return messaging_api.get_messenger(self, swarm_id, **options)

    async def send_message(
        self, from_swarm: str, to_swarm: str, message: Mapping[str, Any] | Envelope
    ) -> Sent:
        """A targeted message, recorded in the target channel's history."""
        return await messaging_api.send_message(self, from_swarm, to_swarm, message)

    async def broadcast(self, from_swarm: str, message: Mapping[str, Any] | Envelope) -> Sent:
        """A message on ``<ns>:global`` for every swarm."""
        return await messaging_api.broadcast(self, from_swarm, message)

    async def statistics(self) -> dict[str, Any]:
        """Task counts per status, counters, swarms per status and the leader."""
        info, left = await current_leader(self.scripts, self.keys)
        swarms = await self.registry.swarms()
        by_status: dict[str, int] = {}
        for s in swarms:
            by_status[s.status] = by_status.get(s.status, 0) + 1
        return {
            "tasks": await self.tasks.counts(),
            "counters": await self.tasks.stats(),
            "swarms": by_status,
            "leader": leader_report(info, left),
        }
