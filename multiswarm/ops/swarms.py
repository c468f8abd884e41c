"""The registry scripts: swarms, their status state machine, workers and heartbeats.

Swarm scripts take the index set and the status index sets (``lib/03_swarms.lua`` order); those
that move tasks take the 26 task keys first (:class:`~multiswarm.keys.TaskKeys`).
"""

from __future__ import annotations

from collections.abc import Sequence

from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner

REGISTER = Script("register_swarm", str, request_id=True)
TRANSITION = Script("transition_swarm", str, request_id=True)
HOST = Script("host_swarms", dict[str, str], request_id=True, durable=True)
HEARTBEAT = Script(
    "heartbeat_worker",
    bool,
    by_nature="records the latest beat time; a repeat records a later one",
)
REAP = Script("reap_workers", list[str], request_id=True, durable=True)
PAUSE = Script("pause_swarm", bool, request_id=True)
SCALE = Script(
    "scale_swarm",
    int,
    by_nature="sets absolute member targets; a repeat sets the same targets",
)
ARCHIVE = Script(
    "archive_swarms",
    list[str],
    by_nature="forgets swarms archived before a cutoff; a repeat finds fewer",
)
#: a repeat after the swarm is gone would say NOT_FOUND: the request key replays "deleted"
DELETE = Script("delete_swarm", str, request_id=True)


def _swarm_keys(keys: Keys) -> list[str]:
    return [keys.index, keys.swarms, *keys.swarm_status_all]


async def register_swarm(scripts: ScriptRunner, keys: Keys, spec: bytes, max_swarms: int) -> str:
    """``created`` | ``exists``."""
    return await REGISTER(scripts, _swarm_keys(keys), [spec, max_swarms])


async def transition_swarm(
    scripts: ScriptRunner, keys: Keys, swarm_id: str, status: str, expected: str
) -> str:
    """The previous status."""
    return await TRANSITION(
        scripts,
        [
            *keys.task_keyset,
            keys.index,
            *keys.swarm_status_all,
            keys.archive,
            keys.queue(swarm_id),
        ],
        [swarm_id, status, expected],
    )


async def host_swarms(
    scripts: ScriptRunner,
    keys: Keys,
    worker_id: str,
    info: bytes,
    max_swarms: int,
    dropped: Sequence[str],
    specs: Sequence[bytes],
) -> dict[str, str]:
    """Swarm id -> status before (``new`` when created)."""
    return await HOST(
        scripts,
        [
            *keys.task_keyset,
            keys.index,
            *keys.swarm_status_all,
            *[keys.queue(s) for s in dropped],
        ],
        [worker_id, info, max_swarms, ",".join(dropped), *specs],
    )


async def heartbeat_worker(
    scripts: ScriptRunner, keys: Keys, worker_id: str, report: bytes, mem_load: float
) -> bool:
    """False when the worker was declared dead meanwhile."""
    return await HEARTBEAT(
        scripts,
        [keys.workers, keys.heartbeats, keys.swarms],
        [worker_id, report, f"{mem_load:.3f}"],
    )


async def reap_workers(
    scripts: ScriptRunner,
    keys: Keys,
    *,
    timeout_ms: int,
    worker_id: str,
    graceful: bool,
    seed: int,
) -> list[str]:
    """The worker ids removed (the swarms they hosted come from their records)."""
    return await REAP(
        scripts,
        [*keys.task_keyset, *keys.swarm_status_all, keys.workers_gone, keys.sweep_clock("workers")],
        [timeout_ms, worker_id, "1" if graceful else "0", seed],
    )


async def pause_swarm(scripts: ScriptRunner, keys: Keys, swarm_id: str, paused: bool) -> bool:
    """True when the flag changed."""
    return await PAUSE(scripts, [keys.swarms], [swarm_id, "1" if paused else "0"])


async def scale_swarm(
    scripts: ScriptRunner, keys: Keys, swarm_id: str, python: int, external: int
) -> None:
    """Set a swarm's member targets. Raises NotFound, IllegalTransition."""
    await SCALE(scripts, [keys.swarms], [swarm_id, python, external])


async def archive_swarms(
    scripts: ScriptRunner, keys: Keys, retention_ms: int, limit: int
) -> list[str]:
    """The ids forgotten."""
    return await ARCHIVE(scripts, [*_swarm_keys(keys), keys.archive], [retention_ms, limit])


async def delete_swarm(scripts: ScriptRunner, keys: Keys, swarm_id: str) -> str:
    """Forget a finished or interrupted swarm with nothing queued; the status it had.

    Raises NotFound, IllegalTransition (not finished nor interrupted, or tasks queued)."""
    return await DELETE(
        scripts, [*_swarm_keys(keys), keys.archive, keys.queue(swarm_id)], [swarm_id]
    )
