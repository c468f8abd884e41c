"""SwarmRegistry: swarms, their status state machine, workers and heartbeats.

Statuses ``initializing, active, recovering, interrupted, completed, failed``; the transitions
allowed are in ``scripts/lua/lib/03_swarms.lua`` and an illegal one raises
:class:`~multiswarm.errors.IllegalTransition` without writing anything.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from multiswarm.errors import (
    InvalidArgumentError,
    InvalidIdError,
    MessageDecodeError,
    NotFound,
)
from multiswarm.keys import SWARM_STATUSES, Keys, check_id
from multiswarm.messages import (
    PRIORITIES,
    Swarm,
    WorkerInfo,
    decode_swarm,
    decode_worker,
    encode_json,
)
from multiswarm.messenger import SwarmMessenger
from multiswarm.ops import partitions as partition_ops
from multiswarm.ops import swarms as ops
from multiswarm.ops.script import decode
from multiswarm.resources import ResourcePools, release_swarm_resources
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore

log = logging.getLogger(__name__)


class SwarmSpec(msgspec.Struct, kw_only=True):
    """A swarm's definition: capabilities, priority, agents and queue capacity.

    ``capacity`` is the most tasks assigned to or running in the swarm at once (the leader's
    back-pressure); by default one per agent, a floor: the hosting worker raises it to its
    slots x (1 + prefetch) (decision 93), so ``prefetch`` alone says what queues behind them.
    """

    id: str
    caps: str = ""
    prio: int = 1
    max_agents: int = 4
    capacity: int = 0
    objective: str = ""
    external: int = 0
    #: What the hosting worker can run (its advert, dispatch_tasks.lua routes by it): csv of
    #: registered handler names, or None when not advertised (anything: an older worker).
    handlers: str | None = None
    #: csv of the import-path prefixes the hosting worker allows besides (opt-in).
    prefixes: str = ""


#: Ids whose targeted channel ``<ns>:<id>`` would be a system channel (docs/messaging.md).
RESERVED_SWARM_IDS = frozenset({"global", "coordination", "agents", "tasks", "events", "reply"})


def swarm_spec(
    swarm_id: str,
    capabilities: Iterable[str] = (),
    *,
    priority: str = "normal",
    agents: int = 4,
    capacity: int | None = None,
    objective: str = "",
) -> SwarmSpec:
    """Build and validate a :class:`SwarmSpec`. Raises InvalidIdError, ValueError."""
    if priority not in PRIORITIES:
        raise InvalidArgumentError(f"priority {priority!r} not in {sorted(PRIORITIES)}")
    if swarm_id in RESERVED_SWARM_IDS:
        raise InvalidIdError(
            f"swarm id {swarm_id!r} is reserved: its channel <ns>:{swarm_id} is a system channel"
        )
    if agents < 1:
        raise InvalidArgumentError("a swarm needs at least one agent")
    return SwarmSpec(
        id=check_id(swarm_id, "swarm id"),
        caps=",".join(check_id(c, "capability") for c in capabilities),
        prio=PRIORITIES[priority],
        max_agents=agents,
        capacity=capacity if capacity is not None else agents,
        objective=objective,
    )


def split_scaling(
    python: int, external: int, target: int, external_share: float = 0.3, has_external: bool = True
) -> tuple[int, int]:
    """New member counts ``(python, external)`` for a swarm scaled to ``target`` members.

    Growth is split ``1 - external_share`` Python / ``external_share`` external (70/30 by
    default, DESIGN.md); shrinking removes Python agents first; at least one member of each kind
    is kept (of external ones only when the swarm has an external command).

    Raises ValueError for a target below the minimum.
    """
    minimum = 2 if has_external else 1
    if target < minimum:
        raise InvalidArgumentError(
            f"target {target} below the minimum of {minimum} (one of each kind)"
        )
    if not has_external:
        return target, 0
    current = python + external
    if target >= current:
        add = target - current
        new_external = external + round(add * external_share)
        new_python = target - new_external
    else:
        remove = current - target
        from_python = min(remove, python - 1)
        new_python = python - from_python
        new_external = external - (remove - from_python)
    if new_external < 1:
        new_external, new_python = 1, new_python - 1
    if new_python < 1:
        new_python, new_external = 1, new_external - 1
    return new_python, new_external


class SwarmRegistry:
    """Register swarms and workers; move swarms through their status state machine."""

    def __init__(self, scripts: Scripts, keys: Keys, max_swarms: int = 100) -> None:
        self.scripts = scripts
        self.keys = keys
        self.client = scripts.client
        self.max_swarms = max_swarms

    async def register_swarm(self, spec: SwarmSpec) -> str:
        """Add a swarm (``initializing``). Returns ``created`` or ``exists``.

        Raises CapacityExceeded past ``SWARM_MAX_COUNT`` live swarms.
        """
        return await ops.register_swarm(self.scripts, self.keys, encode_json(spec), self.max_swarms)

    async def transition(self, swarm_id: str, status: str, expected: str = "") -> str:
        """Move a swarm to ``status``; returns the previous status.

        A finished swarm (``completed``, ``failed``) hands its queued, unclaimed tasks back to
        ready for other swarms and its queue is deleted. Raises NotFound, IllegalTransition.
        """
        sid = check_id(swarm_id, "swarm id")
        before = await ops.transition_swarm(self.scripts, self.keys, sid, status, expected)
        if status in ("completed", "failed"):
            # a finished swarm gives back its resources (idempotent; the registry's
            # housekeeping reclaims them too if this process dies first)
            await release_swarm_resources(self.scripts, self.keys, swarm_id)
        return before

    async def host_swarms(
        self, worker_id: str, info: dict[str, Any], specs: Sequence[SwarmSpec]
    ) -> dict[str, str]:
        """Register a worker as host of exactly ``specs`` (creating swarms as needed).

        A finished swarm (completed, failed) is skipped, not hosted: its entry reads
        ``completed`` or ``failed`` and the worker should stop serving it. Re-registering under
        the same id drops the worker from swarms it hosted before and ``specs`` no longer name;
        one left without a host is interrupted and its queued tasks go back to ready.

        Returns swarm id -> status before (``new`` for created swarms). Raises
        CapacityExceeded.
        """
        wid = check_id(worker_id, "worker id")
        raw = await self.scripts.read(lambda: self.client.hget(self.keys.workers, wid))
        try:
            hosted = decode_worker(raw).swarms.split(",") if raw is not None else []
        except MessageDecodeError:
            hosted = []  # an unreadable record: the assignment deadline covers its queues
        wanted = {s.id for s in specs}
        dropped = [s for s in dict.fromkeys(hosted) if s and s not in wanted]
        return await ops.host_swarms(
            self.scripts,
            self.keys,
            wid,
            encode_json(info),
            self.max_swarms,
            dropped,
            [encode_json(s) for s in specs],
        )

    async def heartbeat(self, worker_id: str, report: dict[str, Any], mem_load: float) -> bool:
        """Record a beat; False when the worker was declared dead and must register again."""
        return await ops.heartbeat_worker(
            self.scripts, self.keys, worker_id, encode_json(report), mem_load
        )

    async def reap_workers(
        self, timeout_ms: int, worker_id: str = "", graceful: bool = False
    ) -> list[str]:
        """Remove dead workers (or ``worker_id`` now) and re-queue their tasks.

        Swarms left with no live host become ``interrupted``. Returns removed worker ids.
        """
        return await ops.reap_workers(
            self.scripts,
            self.keys,
            timeout_ms=timeout_ms,
            worker_id=worker_id,
            graceful=graceful,
            seed=random.getrandbits(31),
        )

    async def set_paused(self, swarm_id: str, paused: bool) -> bool:
        """Pause (or resume) a swarm: no dispatch to it and no claims from it while paused;
        running tasks finish and queued ones wait. Announces ``swarm.paused|resumed`` on
        ``<ns>:events``. Returns False when it already was so. Raises NotFound,
        IllegalTransition (finished swarm)."""
        changed = await ops.pause_swarm(
            self.scripts, self.keys, check_id(swarm_id, "swarm id"), paused
        )
        if changed:
            messenger = SwarmMessenger(self.client, self.keys, sender="registry")
            await messenger.publish(
                self.keys.ch_events,
                "swarm.paused" if paused else "swarm.resumed",
                {"swarm": swarm_id},
            )
            await messenger.publish(self.keys.ch_tasks, "swarm_changed", {"swarm": swarm_id})
        return changed

    async def scale(
        self, swarm_id: str, target: int, external_share: float = 0.3
    ) -> tuple[int, int]:
        """Scale a swarm to ``target`` members per hosting worker; returns the new
        ``(python, external)`` split (:func:`split_scaling`: growth 70/30,
        Python agents removed first, one of each kind kept). Hosting workers reconcile at once
        (notification) or at their next heartbeat. Raises NotFound, IllegalTransition,
        ValueError (target below one of each kind)."""
        swarm = await self.get(swarm_id)
        python, external = split_scaling(
            swarm.max_agents,
            swarm.external,
            target,
            external_share,
            has_external=swarm.external > 0,
        )
        await ops.scale_swarm(self.scripts, self.keys, swarm_id, python, external)
        messenger = SwarmMessenger(self.client, self.keys, sender="registry")
        await messenger.publish(
            self.keys.ch_tasks, "swarm_scaled", {"swarm": swarm_id}, target=swarm_id
        )
        await messenger.publish(
            self.keys.ch_events,
            "swarm.scaled",
            {"swarm": swarm_id, "python": python, "external": external},
        )
        return python, external

    async def archive(self, retention_ms: int, limit: int = 100) -> list[str]:
        """Forget finished swarms archived longer than ``retention_ms``."""
        return await ops.archive_swarms(self.scripts, self.keys, retention_ms, limit)

    # -- readers -------------------------------------------------------------------------------
    async def swarm_ids(self, status: str | None = None) -> list[str]:
        key = self.keys.swarm_status(status) if status else self.keys.index
        return sorted(decode(await self.scripts.read(lambda: self.client.smembers(key)), list[str]))

    async def get(self, swarm_id: str) -> Swarm:
        sid = check_id(swarm_id, "swarm id")
        raw = await self.scripts.read(lambda: self.client.hget(self.keys.swarms, sid))
        if raw is None:
            raise NotFound("NOT_FOUND", f"swarm {swarm_id}")
        return (await self._with_load([decode_swarm(raw)]))[0]

    async def swarms(self, status: str | None = None) -> list[Swarm]:
        """Every swarm (or those of one status), by id."""
        if status is not None and status not in SWARM_STATUSES:
            raise InvalidArgumentError(f"unknown status {status!r}; one of {SWARM_STATUSES}")
        ids = await self.swarm_ids(status)
        if not ids:
            return []
        raws = await self.scripts.read(lambda: self.client.hmget(self.keys.swarms, ids))
        return await self._with_load([decode_swarm(r) for r in raws if r is not None])

    async def _with_load(self, swarms: list[Swarm]) -> list[Swarm]:
        """Fill the counts kept beside the records: active (the dispatch index) and the memory
        load of a host (each worker's last beat)."""
        if not swarms:
            return swarms
        hosts = sorted({s.host_workers[0] for s in swarms if s.host_workers})

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(self.keys.swarm_active, [s.id for s in swarms])
            pipe.hmget(self.keys.worker_mem, hosts or ["-"])
            return await pipe.execute()

        active, mem = decode(
            await self.scripts.read(read), tuple[list[str | None], list[str | None]]
        )
        loads = dict(zip(hosts, mem, strict=False))
        return [
            msgspec.structs.replace(
                s,
                active=int(a or 0),
                mem_load=float(loads.get(s.host_workers[0]) or 0) if s.host_workers else 0.0,
            )
            for s, a in zip(swarms, active, strict=True)
        ]

    async def workers(self) -> list[WorkerInfo]:
        raws = await self.scripts.read(lambda: self.client.hgetall(self.keys.workers))
        return sorted((decode_worker(v) for v in raws.values()), key=lambda w: w.id)


async def housekeeping(registry: SwarmRegistry, *, archive_ms: int, result_ttl_ms: int) -> int:
    """One housekeeping round; returns the number of finished tasks forgotten.

    Forgets swarms archived longer than ``archive_ms`` (with several partitions, their
    placements in the control slot's directory too: decision 111), then every finished task
    past its result TTL (``result_ttl_ms`` or the task's own; bounded script calls repeated
    until none is due, so pruning keeps up with any completion rate), then reclaims resources
    of finished swarms.
    """
    keys = registry.keys
    for sid in await registry.archive(archive_ms):
        if keys.partitions > 1:
            control = Keys(keys.ns, 0, keys.partitions)
            await partition_ops.unplace_swarm(registry.scripts, control, sid)
    pruned = await TaskStore(registry.scripts, registry.keys).prune(result_ttl_ms)
    await ResourcePools(registry.scripts, registry.keys).reclaim()
    return pruned
