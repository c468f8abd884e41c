"""The partition directory's scripts (control slot, decision 44): where each swarm is placed,
and how many coordinators share the partitions' leader leases."""

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


async def coordinators_alive(
    scripts: ScriptRunner, control: Keys, holder: str, ttl_ms: int, *, alive: bool = True
) -> int:
    """Renew (or, not ``alive``, end) ``holder``'s membership for ``ttl_ms`` ms; returns how many
    coordinators are alive now."""
    return await ALIVE(scripts, [control.coordinators], [holder, ttl_ms, "1" if alive else "0"])
