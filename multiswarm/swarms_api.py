"""Swarm methods of the :class:`~multiswarm.api.Multiswarm` facade: create, read, pause,
scale, finish and forget swarms.

Plain async functions over a :class:`~multiswarm.api_types.Host`, bound as facade methods; the
work is done by :class:`~multiswarm.registry.SwarmRegistry` (the status state machine is
``scripts/lua/lib/03_swarms.lua``: ``completed`` and ``failed`` are terminal).
"""

from __future__ import annotations

from collections.abc import Iterable

from multiswarm.api_types import Host, Part
from multiswarm.errors import NotFound, ScriptError
from multiswarm.keys import check_id
from multiswarm.messages import Swarm
from multiswarm.ops import swarms as ops
from multiswarm.partition_api import fan_out, on_swarm
from multiswarm.partitions import place_swarms, swarm_partitions, unplace_swarm
from multiswarm.registry import swarm_spec
from multiswarm.tasks_api import pick_unique


async def create_swarm(
    host: Host,
    swarm_id: str,
    capabilities: Iterable[str] = (),
    *,
    priority: str = "normal",
    agents: int = 4,
    objective: str = "",
) -> str:
    """Register a swarm; it stays ``initializing`` until a worker hosts it.

    With several coordination partitions the swarm is placed in one first
    (:func:`multiswarm.partitions.place_swarms`), and registered there; a swarm placed
    already stays where it is.

    Parameters
    ----------
    capabilities:
        What its agents can do (task capabilities must be a subset).
    priority:
        ``high`` | ``normal`` | ``low``.
    agents:
        Agent processes per hosting worker.

    Returns
    -------
    str
        ``created``, or ``exists`` when the id is taken (nothing changed).

    Raises
    ------
    InvalidIdError
        Malformed or reserved id or capability.
    CapacityExceeded
        ``SWARM_MAX_COUNT`` live swarms already.
    """
    spec = swarm_spec(swarm_id, capabilities, priority=priority, agents=agents, objective=objective)
    if len(host.parts) == 1:
        return await host.registry.register_swarm(spec)
    # placed already: stay (placing again with other capabilities would move it, and the
    # record would exist twice)
    k = (await swarm_partitions(host.scripts, host.settings, [spec.id]))[spec.id]
    placed_now = k is None
    if k is None:
        caps = [c for c in spec.caps.split(",") if c]
        [k] = await place_swarms(host.scripts, host.settings, [(spec.id, caps)])
    host.routes.swarms[spec.id] = k
    try:
        return await host.parts[k].registry.register_swarm(spec)
    except ScriptError:
        # refused (full, bad spec): the placement made for it would name a swarm that exists
        # nowhere and count its capabilities there (decision 111)
        # (unless another facade registered it meanwhile, through the placement it found)
        if placed_now and not await _registered(host.parts[k], spec.id):
            host.routes.swarms.pop(spec.id, None)
            await unplace_swarm(host.scripts, host.settings, spec.id)
        raise


async def _registered(part: Part, swarm_id: str) -> bool:
    try:
        await part.registry.get(swarm_id)
    except NotFound:
        return False
    return True


async def list_swarms(host: Host, status: str | None = None) -> list[Swarm]:
    """Every swarm record (or those of one ``status``), by id.

    Raises
    ------
    InvalidArgumentError
        ``status`` is not a swarm status.
    """
    if len(host.parts) == 1:
        return await host.registry.swarms(status)
    each = await fan_out(host, lambda p: p.registry.swarms(status))
    return sorted((s for swarms in each for s in swarms), key=lambda s: s.id)


async def get_swarm(host: Host, swarm_id: str) -> Swarm:
    """One swarm record.

    Raises
    ------
    NotFound
        No such swarm.
    InvalidIdError
        Malformed id.
    """
    return await on_swarm(host, swarm_id, lambda p: p.registry.get(swarm_id))


async def pause_swarm(host: Host, swarm_id: str) -> bool:
    """Stop dispatch to the swarm and claims by its workers; running tasks finish, queued ones
    wait. Announced as ``swarm.paused`` on ``<ns>:events``.

    Returns
    -------
    bool
        False when it was paused already (nothing changed).

    Raises
    ------
    NotFound
        No such swarm.
    IllegalTransition
        The swarm has finished.
    """
    return await on_swarm(host, swarm_id, lambda p: p.registry.set_paused(swarm_id, True))


async def resume_swarm(host: Host, swarm_id: str) -> bool:
    """Undo :func:`pause_swarm` (announced as ``swarm.resumed``).

    Returns
    -------
    bool
        False when it was not paused (nothing changed).

    Raises
    ------
    NotFound, IllegalTransition
        As :func:`pause_swarm`.
    """
    return await on_swarm(host, swarm_id, lambda p: p.registry.set_paused(swarm_id, False))


async def scale_swarm(host: Host, swarm_id: str, target: int) -> tuple[int, int]:
    """Scale to ``target`` members per hosting worker (growth 70 % Python agents / 30 % external
    members, Python agents removed first, one of each kind kept).

    Returns
    -------
    tuple of int
        The new ``(python, external)`` split.

    Raises
    ------
    NotFound, IllegalTransition
        No such swarm; a finished one.
    ValueError
        ``target`` below one of each kind.
    """
    return await on_swarm(host, swarm_id, lambda p: p.registry.scale(swarm_id, target))


async def complete_swarm(host: Host, swarm_id: str) -> str:
    """Finish a swarm as ``completed``: it takes no more work, its queued (unclaimed) tasks go
    back to ready for other swarms, running ones finish on their workers, its resources are
    released, and it is forgotten after the archive period (or by :func:`delete_swarm`).

    Returns
    -------
    str
        The status it had (``completed`` again when it already was: nothing changed).

    Raises
    ------
    NotFound
        No such swarm.
    IllegalTransition
        Its status cannot become ``completed`` (only an ``active`` swarm can; ``failed`` is
        terminal).
    InvalidIdError
        Malformed id.
    """
    return await on_swarm(host, swarm_id, lambda p: p.registry.transition(swarm_id, "completed"))


async def fail_swarm(host: Host, swarm_id: str) -> str:
    """Finish a swarm as ``failed`` (from any unfinished status); otherwise as
    :func:`complete_swarm`.

    Raises
    ------
    NotFound, IllegalTransition, InvalidIdError
        As :func:`complete_swarm` (``completed`` is terminal).
    """
    return await on_swarm(host, swarm_id, lambda p: p.registry.transition(swarm_id, "failed"))


async def delete_swarm(host: Host, swarm_id: str) -> str:
    """Forget a finished (``completed``, ``failed``) or ``interrupted`` swarm now instead of
    after the archive period. Its state, snapshots and checkpoints stay until they expire.

    Returns
    -------
    str
        The status it had.

    Raises
    ------
    NotFound
        No such swarm.
    IllegalTransition
        It is still initializing, active or recovering, or tasks of it are queued, assigned
        or running.
    InvalidIdError
        Malformed id.
    """
    sid = check_id(swarm_id, "swarm id")
    if len(host.parts) == 1:
        return await ops.delete_swarm(host.scripts, host.keys, sid)

    async def delete(p: Part) -> str:
        return await ops.delete_swarm(p.scripts, p.keys, sid)

    before = await on_swarm(host, sid, delete)
    await unplace_swarm(host.scripts, host.settings, sid)
    host.routes.swarms.pop(sid, None)
    return before


async def resolve_swarm_id(host: Host, id_or_prefix: str) -> str:
    """The swarm id that ``id_or_prefix`` names: itself when such a swarm exists, else the one
    swarm whose id starts with it, else it unchanged (the next call says NOT_FOUND).

    Raises
    ------
    InvalidArgumentError
        More than one swarm id starts with it (the message lists them).
    InvalidIdError
        Malformed id.
    """
    check_id(id_or_prefix, "swarm id")
    ids = [i for each in await fan_out(host, lambda p: p.registry.swarm_ids()) for i in each]
    if id_or_prefix in ids:
        return id_or_prefix
    return pick_unique("swarm", id_or_prefix, [i for i in ids if i.startswith(id_or_prefix)])
