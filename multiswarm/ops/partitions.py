"""The partition directory's scripts (control slot, decision 44): where each swarm is placed,
which partition new caller-chosen task ids are reserved for (decision 108), and how many
coordinators share the partitions' leader leases."""

from __future__ import annotations

from collections.abc import Sequence

from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner

PLACE = Script(
    "place_swarms",
    list[int],
    by_nature="a placed swarm keeps its partition: a repeat returns the same placement",
)
UNPLACE = Script(
    "unplace_swarm", int, by_nature="a repeat finds the swarm no longer placed and returns -1"
)
RESERVE = Script(
    "reserve_task_routes",
    tuple[int, dict[str, int]],
    by_nature="ids reserved by a first run are found reserved for the same partition: a repeat "
    "returns that partition and writes nothing",
)
ALIVE = Script(
    "coordinators_alive",
    int,
    by_nature="sets this coordinator's expiry from now, or removes it; a repeat does the same",
)


async def place_swarms(
    scripts: ScriptRunner, control: Keys, swarms: Sequence[tuple[str, str]], partitions: int
) -> list[int]:
    """Place ``swarms`` (pairs of id and sorted capabilities csv) in partitions ``0 ..
    partitions - 1``; returns each one's partition, in order."""
    args: list[object] = [partitions]
    for swarm_id, caps in swarms:
        args += [swarm_id, caps]
    return await PLACE(scripts, [control.swarm_partitions, control.partition_caps], args)


async def unplace_swarm(scripts: ScriptRunner, control: Keys, swarm_id: str) -> int:
    """Forget a deleted swarm's placement; its partition, or -1 when it was not placed."""
    return await UNPLACE(scripts, [control.swarm_partitions, control.partition_caps], [swarm_id])


async def reserve_task_routes(
    scripts: ScriptRunner,
    control: Keys,
    task_ids: Sequence[str],
    partition: int,
    *,
    fixed: bool,
    ttl_ms: int,
) -> tuple[int, dict[str, int]]:
    """Reserve new ``task_ids`` for ``partition`` (for ``ttl_ms`` ms), unless some are reserved
    already: for one other partition the batch goes there instead (not when ``fixed``).
    Returns ``(partition, {})``, every id now reserved for it; or ``(-1, conflicts)``, the ids
    reserved for partitions that cannot share the batch (id -> partition), nothing written."""
    args: list[object] = [partition, "1" if fixed else "0", ttl_ms, *sorted(task_ids)]
    return await RESERVE(scripts, list(control.task_routes), args)


async def coordinators_alive(
    scripts: ScriptRunner, control: Keys, holder: str, ttl_ms: int, *, alive: bool = True
) -> int:
    """Renew (or, not ``alive``, end) ``holder``'s membership for ``ttl_ms`` ms; returns how many
    coordinators are alive now."""
    return await ALIVE(scripts, [control.coordinators], [holder, ttl_ms, "1" if alive else "0"])
