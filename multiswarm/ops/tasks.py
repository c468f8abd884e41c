"""The task scripts: declarations and typed calls.

Every task script takes the 26 task keys first, in :meth:`TaskKeys.as_list` order, and its own
keys after them (each script's header lists them); claim_tasks takes only the 8 it uses
(:data:`CLAIM_KEYS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from multiswarm.keys import TASK_STATUSES, Keys
from multiswarm.ops.script import Script, ScriptRunner, text
from multiswarm.task_keys import TaskKeys


class Claimed(msgspec.Struct, array_like=True, frozen=True):
    """A task a worker holds: run ``handler`` on ``payload`` and report with ``token``.

    One row of claim_tasks' reply, in the script's order.
    """

    id: str
    token: str
    handler: str
    payload: bytes
    timeout_ms: int
    lease_ms: int
    attempts: int
    deps: list[str]


class Pruned(msgspec.Struct, array_like=True, frozen=True):
    """prune_tasks' reply: how many were forgotten, whether more is due, the round's instant."""

    pruned: int
    more: bool
    asof: int


class Purged(msgspec.Struct, array_like=True, frozen=True):
    """purge_tasks' reply: how many were forgotten, the completed ids kept for a live
    dependent (csv), whether the budget ran out before the end."""

    purged: int
    held: str
    more: bool


#: Task statuses with an index zset (id -> last update ms; lib/02_tasks.lua INDEXED_STATUS).
#: ready, assigned and running have none (decision 61): :func:`status_counts` and
#: :func:`status_ids` read them off the queues that hold exactly those tasks.
INDEXED_STATUSES = ("pending", "failed", "completed", "dead", "cancelled")


async def status_counts(client: Any, keys: Keys) -> dict[str, int]:
    """Tasks per status, in :data:`~multiswarm.keys.TASK_STATUSES` order: ready = the ready
    zset and the parked zsets, running = the running-by-worker zset, assigned = the rest of
    the leases zset; the others their index. Two round trips when tasks are parked."""
    return (await status_counts_of(client, [keys]))[0]


async def status_counts_of(client: Any, parts: Sequence[Keys]) -> list[dict[str, int]]:
    """:func:`status_counts` of each of ``parts`` (partitions' keys), read together: one
    pipeline, and a second one when tasks are parked somewhere."""
    tk_of = [keys.task_keys for keys in parts]
    pipe = client.pipeline(transaction=False)
    for keys, tk in zip(parts, tk_of):
        for s in INDEXED_STATUSES:
            pipe.zcard(keys.task_status(s))
        for key in (tk.ready, tk.leases, tk.running_by_worker):
            pipe.zcard(key)
        pipe.hkeys(keys.parked_index)
    raw = await pipe.execute()
    m = len(INDEXED_STATUSES) + 4
    rows = [raw[k * m : (k + 1) * m] for k in range(len(parts))]
    parked = [[keys.parked(text(s)) for s in row[-1]] for keys, row in zip(parts, rows)]
    sizes: list[int] = []
    if any(parked):
        pipe = client.pipeline(transaction=False)
        for key in (key for keys_of in parked for key in keys_of):
            pipe.zcard(key)
        sizes = [int(x) for x in await pipe.execute()]
    out = []
    at = 0
    for row, keys_of in zip(rows, parked):
        got = dict(zip(INDEXED_STATUSES, (int(x) for x in row)))
        ready, leased, running = (int(x) for x in row[len(INDEXED_STATUSES) : -1])
        ready += sum(sizes[at : at + len(keys_of)])
        at += len(keys_of)
        got.update(ready=ready, running=running, assigned=max(0, leased - running))
        out.append({s: got[s] for s in TASK_STATUSES})
    return out


async def status_ids(client: Any, keys: Keys, status: str, start: int, count: int) -> list[str]:
    """Ids ``start .. start + count - 1`` of the structure that holds tasks of ``status``, most
    recent first: its index; for ready, the ready zset (last in line first) then each parked
    zset; for running, the running-by-worker zset (by worker); for assigned, the leases zset
    (latest deadline first; it holds the running ones too: the caller keeps the records of the
    status it wants). A page shorter than ``count`` is the last."""
    tk = keys.task_keys
    if status == "running":
        rows = await client.zrange(tk.running_by_worker, start, start + count - 1)
        return [text(r).split("|", 1)[1] for r in rows]
    if status in INDEXED_STATUSES:
        keys_of = [keys.task_status(status)]
    elif status == "ready":
        sets = await client.hkeys(keys.parked_index)
        keys_of = [
            tk.ready,
            *(keys.parked(text(s)) for s in sets),
        ]
    else:
        keys_of = [tk.leases]
    out: list[str] = []
    for key in keys_of:
        if len(out) >= count:
            break
        size = await client.zcard(key) if len(keys_of) > 1 else None
        if size is not None and start >= size:
            start -= size
            continue
        ids = await client.zrevrange(key, start, start + count - len(out) - 1)
        out += [text(i) for i in ids]
        start = 0
    return out


SUBMIT = Script("submit_tasks", list[str], request_id=True, durable=True)
CANCEL = Script("cancel_task", str, request_id=True, durable=True)
CLAIM = Script(
    "claim_tasks", list[Claimed], request_id=True, custom_replay=True, durable=True, wait_once=True
)
# Not durable (decision 116): a renewal waiting on a replica that stopped acknowledging held
# every other renewal of the worker behind it past the leases; one lost at a failover is made
# again by the next, a third of a lease later, as the claim's own deadline is replicated.
EXTEND = Script(
    "extend_leases",
    list[str],
    by_nature="sets each held lease to now + its length; a repeat sets it again",
)
FINISH = Script("finish_tasks", list[str], request_id=True, durable=True)
# Not durable: progress is a view (decision 128); a report lost at a failover is replaced by
# the next, a second later.
PROGRESS = Script(
    "record_progress",
    int,
    by_nature="writes what a run's worker knows of it, a report only if not older; a repeat the same",
)
RELEASE = Script("release_tasks", int, request_id=True, durable=True)
PRUNE = Script(
    "prune_tasks",
    Pruned,
    by_nature="deletes terminal tasks past their retention; a repeat finds fewer",
)

RETRY = Script("retry_tasks", list[str], request_id=True, durable=True)
PURGE = Script(
    "purge_tasks",
    Purged,
    by_nature="forgets finished tasks an operator asked to purge; a repeat finds fewer",
)


#: The task keys claim_tasks takes (lib/02_tasks.lua ``load_claim_keys``, same order): 8 of
#: the 26, as each key a call passes costs Redis ~0.55 K instructions (decision 83).
CLAIM_KEYS = (
    "tasks",
    "payload",
    "leases",
    "stats",
    "swarms",
    "workers",
    "events_watch",
    "running_by_worker",
)
_CLAIM_AT = tuple(TaskKeys.__struct_fields__.index(f) for f in CLAIM_KEYS)


def claim_keyset(keys: Keys) -> list[str]:
    """KEYS[1..8] of claim_tasks: :data:`CLAIM_KEYS` of ``keys``' task keyset."""
    ks = keys.task_keyset
    return [ks[i] for i in _CLAIM_AT]


def _pairs(held: dict[str, str]) -> list[str]:
    return [x for tid, token in held.items() for x in (tid, token)]


async def submit_tasks(
    scripts: ScriptRunner, keys: Keys, specs: Sequence[tuple[bytes, bytes]]
) -> tuple[list[str], str]:
    """Submit ``(spec, payload bytes)`` pairs, all or nothing; per task its status, and the id
    of the completions stream's last entry before any of them can complete (a waiter's
    cursor). A spec is :func:`multiswarm.messages.encode_task_spec`'s MessagePack (or an
    older client's JSON)."""
    args: list[Any] = [len(specs)]
    for spec, payload in specs:
        args += [spec, payload]
    *statuses, cursor = await SUBMIT(scripts, keys.task_keyset, args)
    return statuses, cursor


async def cancel_task(scripts: ScriptRunner, keys: Keys, task_id: str, reason: str) -> str:
    """``cancelled`` | ``ended:<status>``."""
    return await CANCEL(scripts, keys.task_keyset, [task_id, reason])


async def claim_tasks(
    scripts: ScriptRunner, keys: Keys, *, swarm_id: str, worker_id: str, count: int
) -> list[Claimed]:
    """Lease up to ``count`` tasks of the swarm's queue to ``worker_id``."""
    return await CLAIM(
        scripts, [*claim_keyset(keys), keys.queue(swarm_id)], [swarm_id, worker_id, count]
    )


async def claim_tasks_when_woken(
    scripts: ScriptRunner,
    keys: Keys,
    *,
    swarm_id: str,
    worker_id: str,
    count: int,
    wake: tuple[str, int],
) -> tuple[str | None, list[Claimed]]:
    """:func:`claim_tasks`, run by Redis once the swarm's wake-up stream
    (:meth:`~multiswarm.keys.Keys.wake_swarm`: assignments to it) has an entry after id
    ``wake[0]``, or after ``wake[1]`` ms. Returns the newest entry id read (None: none) and
    the tasks leased."""
    return await CLAIM.call(
        scripts,
        [*claim_keyset(keys), keys.queue(swarm_id)],
        [swarm_id, worker_id, count],
        wake=(keys.wake_swarm(swarm_id), *wake),
    )


async def extend_leases(
    scripts: ScriptRunner, keys: Keys, worker_id: str, held: dict[str, str]
) -> list[str]:
    """Renew the leases of ``{task id: token}``; the ids whose lease was lost."""
    return await EXTEND(scripts, keys.task_keyset, [worker_id, *_pairs(held)])


class Outcome(msgspec.Struct, array_like=True, frozen=True):
    """One attempt's outcome for :func:`finish_tasks`: ``kind`` is ``ok`` (``data``: the packed
    result bytes), ``error`` or ``permanent`` (``data``: the error text, at most 4000 chars)."""

    id: str
    token: str
    kind: str
    data: bytes | str


async def finish_tasks(
    scripts: ScriptRunner, keys: Keys, worker_id: str, outcomes: Sequence[Outcome], *, seed: int
) -> list[str]:
    """Record many attempts' outcomes in one call; one reply per outcome, in order:
    ``completed`` | ``duplicate`` | ``ended:<status>`` for results, ``retry`` | ``dead`` |
    ``stale`` for failures, ``not_found`` | ``illegal:<status>`` for either
    (finish_tasks.lua). ``seed`` seeds the backoff jitter."""
    args: list[Any] = [worker_id, seed]
    for o in outcomes:
        args += [o.id, o.token, o.kind, o.data]
    return await FINISH(scripts, [*keys.task_keyset, keys.parked_index], args)


async def record_progress(
    scripts: ScriptRunner,
    keys: Keys,
    reports: Sequence[tuple[str, str, str, int, float | None, str, int]],
) -> int:
    """Write ``(task id, token, agent, start ms, fraction, note, report ms)`` of held runs (an
    agent of '' and a fraction of None write none); how many records were written
    (record_progress.lua: not those whose run no longer holds its task, nor an older report
    than the recorded one)."""
    args: list[Any] = []
    for task_id, token, agent, start, fraction, note, ms in reports:
        args += [task_id, token, agent, start, "" if fraction is None else repr(fraction), note, ms]
    return await PROGRESS(scripts, keys.task_keyset, args)


async def release_tasks(scripts: ScriptRunner, keys: Keys, held: dict[str, str]) -> int:
    """Hand ``{task id: token}`` back; how many went back to ready."""
    return await RELEASE(scripts, keys.task_keyset, _pairs(held))


async def prune_tasks(
    scripts: ScriptRunner, keys: Keys, *, retention_ms: int, batch: int, asof: int
) -> Pruned:
    """One bounded prune call (prune_tasks.lua)."""
    return await PRUNE(
        scripts,
        [*keys.task_keyset, keys.task_retained, keys.task_prune_cursor],
        [retention_ms, batch, asof],
    )


async def retry_tasks(scripts: ScriptRunner, keys: Keys, task_ids: Sequence[str]) -> list[str]:
    """Per id ``retried`` | ``not_found`` | ``status:<s>`` | ``dependency:<id>``."""
    return await RETRY(scripts, keys.task_keyset, list(task_ids))


async def purge_tasks(
    scripts: ScriptRunner,
    keys: Keys,
    *,
    status: str,
    older_than_ms: int,
    batch: int,
    skip: Sequence[str],
) -> Purged:
    """One bounded purge call (purge_tasks.lua); ``skip``: ids held in earlier calls."""
    return await PURGE(
        scripts,
        [*keys.task_keyset, keys.task_retained],
        [status, older_than_ms, batch, ",".join(skip)],
    )
