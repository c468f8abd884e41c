"""The resource pool scripts: KEYS are the pools hash and the holders hash (keys.py), and the
swarms hash where a script checks that a swarm is live."""

from __future__ import annotations

import msgspec

from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner


class Booked(msgspec.Struct, array_like=True, frozen=True):
    """allocate_resource's reply: the swarm's holding and the pool's totals after it."""

    held: int
    allocated: int
    capacity: int


class Released(msgspec.Struct, array_like=True, frozen=True):
    """release_resource's reply."""

    released: int
    held: int


class Reclaimed(msgspec.Struct, array_like=True, frozen=True):
    """One entry of reclaim_resources' reply."""

    swarm_id: str
    type: str
    amount: int


class Pools(msgspec.Struct, array_like=True, frozen=True):
    """read_resources' reply: ``cap:<type>``/``used:<type>`` -> amount, and
    ``<type>:<swarm id>`` -> amount held."""

    pools: dict[str, int]
    holders: dict[str, int]


INIT = Script("init_pool", str, request_id=True)
ALLOCATE = Script("allocate_resource", Booked, request_id=True)
RELEASE = Script("release_resource", Released, request_id=True)
RELEASE_SWARM = Script(
    "release_swarm_resources",
    dict[str, int],
    by_nature="releases everything one swarm holds; a repeat finds nothing",
)
RECLAIM = Script(
    "reclaim_resources",
    list[Reclaimed],
    by_nature="releases what ended swarms hold; a repeat finds nothing held",
)
READ = Script("read_resources", Pools, by_nature="read only")


async def init_pool(scripts: ScriptRunner, keys: Keys, rtype: str, capacity: int) -> str:
    """``created`` | ``resized`` | ``unchanged``."""
    return await INIT(scripts, [keys.resources], [rtype, capacity])


async def allocate_resource(
    scripts: ScriptRunner, keys: Keys, swarm_id: str, rtype: str, amount: int
) -> Booked:
    """Book ``amount`` of pool ``rtype`` for a live swarm. Raises ResourceExhausted, NotFound."""
    return await ALLOCATE(
        scripts, [keys.resources, keys.resource_holders, keys.swarms], [swarm_id, rtype, amount]
    )


async def release_resource(
    scripts: ScriptRunner, keys: Keys, swarm_id: str, rtype: str, amount: int | None
) -> Released:
    """Give back ``amount`` (None: all the swarm holds)."""
    n = "" if amount is None else amount
    return await RELEASE(scripts, [keys.resources, keys.resource_holders], [swarm_id, rtype, n])


async def release_swarm_resources(
    scripts: ScriptRunner, keys: Keys, swarm_id: str
) -> dict[str, int]:
    """Type -> amount released of everything ``swarm_id`` held."""
    return await RELEASE_SWARM(scripts, [keys.resources, keys.resource_holders], [swarm_id])


async def reclaim_resources(scripts: ScriptRunner, keys: Keys) -> list[Reclaimed]:
    """What ended or unknown swarms held, now released."""
    return await RECLAIM(scripts, [keys.resources, keys.resource_holders, keys.swarms], [])


async def read_resources(scripts: ScriptRunner, keys: Keys) -> Pools:
    """Both hashes of the pools, read in one atomic step."""
    return await READ(scripts, [keys.resources, keys.resource_holders], [])
