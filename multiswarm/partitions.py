"""Coordination partitions (decision 44): which partition holds what, for every role.

A deployment of ``settings.partitions`` = P splits its coordination keyspace into P
partitions (:class:`~multiswarm.keys.Keys` of partition ``k``). Each swarm lives in one,
recorded in the control slot's directory by ``place_swarms.lua``; with P = 1 nothing is
recorded and everything is partition 0, the layout from before partitions.
"""

from __future__ import annotations

from collections.abc import Sequence

from multiswarm import ops
from multiswarm.config import Settings
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts


def partition_keys(settings: Settings) -> list[Keys]:
    """The keys of every partition of the settings' namespace; index = partition number."""
    return Keys.all(settings.namespace, settings.partitions)


def capability_csv(capabilities: Sequence[str]) -> str:
    """A capability set as the directory records it: sorted, deduplicated, comma-separated."""
    return ",".join(sorted(set(capabilities)))


async def place_swarms(
    scripts: Scripts, settings: Settings, swarms: Sequence[tuple[str, Sequence[str]]]
) -> list[int]:
    """The partition of each ``(swarm id, capabilities)``, placing new swarms (one script call
    in the control slot; none when P = 1). A placed swarm keeps its partition until
    :func:`unplace_swarm`.

    Raises
    ------
    RedisUnavailable
        Redis stayed unreachable for the reconnect window.
    """
    if settings.partitions == 1 or not swarms:
        return [0] * len(swarms)
    control = Keys(settings.namespace, 0, settings.partitions)
    pairs = [(sid, capability_csv(caps)) for sid, caps in swarms]
    return await ops.partitions.place_swarms(scripts, control, pairs, settings.partitions)


async def unplace_swarm(scripts: Scripts, settings: Settings, swarm_id: str) -> None:
    """Forget a deleted swarm's placement (no-op when P = 1)."""
    if settings.partitions > 1:
        control = Keys(settings.namespace, 0, settings.partitions)
        await ops.partitions.unplace_swarm(scripts, control, swarm_id)


async def swarm_partitions(
    scripts: Scripts, settings: Settings, swarm_ids: Sequence[str]
) -> dict[str, int | None]:
    """Where each swarm was placed (None: not placed, so not known to any partition). One
    ``HMGET`` of the directory; every id is 0 when P = 1."""
    if settings.partitions == 1:
        return dict.fromkeys(swarm_ids, 0)
    if not swarm_ids:
        return {}
    control = Keys(settings.namespace, 0, settings.partitions)
    raw = await scripts.read(
        lambda: scripts.client.hmget(control.swarm_partitions, list(swarm_ids))
    )
    out: dict[str, int | None] = {}
    for sid, entry in zip(swarm_ids, raw, strict=True):
        if entry is None:
            out[sid] = None
            continue
        text = entry.decode() if isinstance(entry, bytes) else str(entry)
        k = int(text.split("|", 1)[0])
        out[sid] = k if k < settings.partitions else None
    return out


async def partition_capabilities(scripts: Scripts, settings: Settings) -> list[dict[str, int]]:
    """Per partition, how many placed swarms offer each capability (``"*"``: all swarms
    placed there). One ``HGETALL`` of the control slot's counts."""
    out: list[dict[str, int]] = [{} for _ in range(settings.partitions)]
    if settings.partitions == 1:
        return out
    control = Keys(settings.namespace, 0, settings.partitions)
    raw = await scripts.read(lambda: scripts.client.hgetall(control.partition_caps))
    for field, value in raw.items():
        text = field.decode() if isinstance(field, bytes) else str(field)
        k, _, what = text.partition("|")
        if what.startswith("=") or not k.isdigit() or int(k) >= settings.partitions:
            continue
        n = int(value)
        if n > 0:
            out[int(k)][what] = n
    return out


#: How long a new caller-chosen task id stays reserved for the partition its submission was
#: routed to (decision 108): longer than a submission's whole retry span (under 120 s, checked
#: by the config), after which the task itself is found where it was submitted.
TASK_ROUTE_TTL_MS = 10 * 60 * 1000


async def reserve_task_routes(
    scripts: Scripts, settings: Settings, task_ids: Sequence[str], partition: int, *, fixed: bool
) -> tuple[int, dict[str, int]]:
    """Reserve new caller-chosen ``task_ids`` for ``partition`` before they are submitted there
    (one script call in the control slot; P > 1 only), so concurrent submissions of one id
    meet in one partition. Ids reserved already for one other partition move the batch there,
    unless ``fixed`` (its dependencies are in ``partition``).

    Returns ``(partition the batch goes to, {})``, or ``(-1, {id: partition})`` with the
    reservations that cannot share one batch (nothing reserved).
    """
    control = Keys(settings.namespace, 0, settings.partitions)
    return await ops.partitions.reserve_task_routes(
        scripts, control, task_ids, partition, fixed=fixed, ttl_ms=TASK_ROUTE_TTL_MS
    )
