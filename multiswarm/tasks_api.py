"""Task methods of the :class:`~multiswarm.api.Multiswarm` facade.

Plain async functions over a :class:`~multiswarm.api_types.Host` (the facade binds each as a
method, so ``ms.get_task(tid)`` is ``get_task(ms, tid)``); the work is done by
:class:`~multiswarm.tasks.TaskStore` (swarm methods: :mod:`multiswarm.swarms_api`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from multiswarm.api_types import Host, Part, TaskOptions, TaskReceipt
from multiswarm.errors import InvalidArgumentError, TaskFailed
from multiswarm.keys import check_id
from multiswarm.messages import Task, TaskSpec, unpack
from multiswarm.partition_api import (
    fan_out,
    group_tasks,
    on_task,
    route_submission,
    submitted,
)
from multiswarm.partition_views import newest_tasks
from multiswarm.tasks import task_spec

#: Longest blocking read of :func:`wait_for` before the record is read again, in seconds: the
#: safety net for tasks that end without a completion entry (dead, cancelled).
SAFETY_NET_S = 1.0
#: How far past its deadline a waiter may wait for the reply of its last step, in seconds: a
#: step blocks no longer than the time left, so only a reply delayed this long is given up.
STEP_GRACE_S = 0.5
#: Most candidates an ambiguous id prefix error lists.
CANDIDATES_SHOWN = 10


def pick_unique(what: str, prefix: str, candidates: Sequence[str]) -> str:
    """The one candidate, or ``prefix`` itself when there is none (so the caller's next read
    says NOT_FOUND).

    Raises
    ------
    InvalidArgumentError
        More than one candidate; the message lists up to :data:`CANDIDATES_SHOWN` of them.
    """
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return prefix
    shown = sorted(candidates)[:CANDIDATES_SHOWN]
    more = ", ..." if len(candidates) > len(shown) else ""
    raise InvalidArgumentError(
        f"{what} id prefix {prefix!r} is ambiguous: {', '.join(shown)}{more}; give more of it"
    )


# -- tasks -----------------------------------------------------------------------------------
async def submit_task(
    host: Host, handler: str, payload: Any = None, options: TaskOptions | None = None
) -> TaskReceipt:
    """Submit one task and say how it stands (:func:`distribute_task` returns only the id).

    Parameters
    ----------
    handler:
        Import path ``package.module:function`` a worker runs (under its allowed prefixes).
    payload:
        Any msgpack-able value, at most 1 MiB encoded.
    options:
        :class:`~multiswarm.api_types.TaskOptions`; ``lease_ms`` defaults to
        ``settings.task_lease_ms`` (``MULTISWARM_TASK_LEASE_MS``).

    Raises
    ------
    BadRequest
        Malformed handler, priority or limits; payload too large.
    InvalidIdError
        Malformed id, capability or dependency id.
    UnknownDependency
        A ``depends_on`` id names no task.
    CrossPartitionError
        With several coordination partitions: ``depends_on`` names tasks of different
        partitions (decision 47); nothing submitted.
    """
    return (await submit_tasks(host, [(handler, payload, options)]))[0]


def _spec(host: Host, handler: str, opts: TaskOptions) -> TaskSpec:
    return task_spec(
        handler,
        id=opts.id,
        name=opts.name,
        capabilities=opts.capabilities,
        priority=opts.priority,
        depends_on=opts.depends_on,
        max_attempts=opts.max_attempts,
        lease_ms=opts.lease_ms or host.settings.task_lease_ms,
        timeout_ms=opts.timeout_ms,
        backoff_ms=opts.backoff_ms,
        backoff_max_ms=opts.backoff_max_ms,
        result_ttl_ms=opts.result_ttl_ms,
    )


async def submit_tasks(
    host: Host, tasks: Sequence[tuple[str, Any, TaskOptions | None]]
) -> list[TaskReceipt]:
    """Submit ``(handler, payload, options)`` triples together, dependencies first (a DAG:
    give ``options.id`` to the tasks others name in ``depends_on``); one receipt each, in
    order. Batches above 50 tasks go in several all-or-nothing calls, in order.

    With several coordination partitions the whole batch goes to one (decision 47): that of
    the existing tasks it depends on, else the least busy one whose swarms offer its
    capabilities.

    Raises
    ------
    BadRequest, InvalidIdError, UnknownDependency
        As :func:`submit_task`.
    CrossPartitionError
        The batch depends on tasks of different partitions (nothing submitted).
    """
    if not tasks:
        return []
    given = [opts.id for _, _, opts in tasks if opts is not None and opts.id]
    specs = [(_spec(host, h, opts or TaskOptions()), payload) for h, payload, opts in tasks]
    part = await route_submission(host, [spec for spec, _ in specs], given)
    out = await part.tasks.submit(specs)
    submitted(host, part, list(out))
    return [TaskReceipt(spec.id, out[spec.id]) for spec, _ in specs]


async def distribute_task(
    host: Host,
    handler: str,
    payload: Any = None,
    options: TaskOptions | None = None,
    *,
    id: str | None = None,
    name: str | None = None,
    capabilities: Sequence[str] | None = None,
    priority: str | None = None,
    depends_on: Sequence[str] | None = None,
    max_attempts: int | None = None,
    lease_ms: int | None = None,
    timeout_ms: int | None = None,
    backoff_ms: int | None = None,
    backoff_max_ms: int | None = None,
    result_ttl_ms: int | None = None,
) -> str:
    """Submit one task; returns its id.

    Options come as a :class:`~multiswarm.api_types.TaskOptions` or as keywords of the same
    names (a keyword given wins over ``options``); meanings, defaults and errors as
    :func:`submit_task`.
    """
    given = {
        k: list(v) if isinstance(v, (list, tuple)) else v
        for k, v in dict(
            id=id,
            name=name,
            capabilities=capabilities,
            priority=priority,
            depends_on=depends_on,
            max_attempts=max_attempts,
            lease_ms=lease_ms,
            timeout_ms=timeout_ms,
            backoff_ms=backoff_ms,
            backoff_max_ms=backoff_max_ms,
            result_ttl_ms=result_ttl_ms,
        ).items()
        if v is not None
    }
    opts = msgspec.structs.replace(options or TaskOptions(), **given)
    return (await submit_task(host, handler, payload, opts)).id


async def list_tasks(host: Host, status: str | None = None, limit: int = 50) -> list[Task]:
    """Up to ``limit`` task records of one ``status`` (or all), most recently updated first.

    Raises
    ------
    BadRequest
        ``status`` is not a task status.
    """
    if len(host.parts) == 1:
        return await host.tasks.list(status, limit)
    return newest_tasks(await fan_out(host, lambda p: p.tasks.list(status, limit)), limit)


async def get_task(host: Host, task_id: str) -> Task:
    """One task record (times in ms; ``lease_until`` is when a running task's lease ends).

    Raises
    ------
    NotFound
        No such task (never submitted, or pruned after its result TTL).
    InvalidIdError
        Malformed id.
    MessageDecodeError
        The stored record is corrupt.
    """
    return await on_task(host, task_id, lambda p: p.tasks.get(task_id))


async def resolve_task_id(host: Host, id_or_prefix: str) -> str:
    """The task id that ``id_or_prefix`` names: itself when such a task exists, else the one
    task whose id starts with it, else it unchanged (the next call says NOT_FOUND).

    Scans the task hash (``HSCAN MATCH``; ids hold no glob characters), so it costs a pass over
    the kept tasks when the id is not exact: meant for operators, not for hot paths.

    Raises
    ------
    InvalidArgumentError
        More than one task id starts with it (the message lists some).
    InvalidIdError
        Malformed id.
    """
    prefix = check_id(id_or_prefix, "task id")
    found = [t for each in await fan_out(host, lambda p: _matching(p, prefix)) for t in each]
    return pick_unique("task", prefix, [prefix] if prefix in found else found)


async def _matching(part: Part, prefix: str) -> list[str]:
    """``[prefix]`` when the partition holds that task, else ids starting with it (a few
    more than shown, at most)."""
    client, key = part.client, part.keys.tasks

    async def scan() -> list[str]:
        if await client.hexists(key, prefix):
            return [prefix]
        found: list[str] = []
        cursor = 0
        while True:
            cursor, batch = await client.hscan(key, cursor, match=prefix + "*", count=1000)
            found += [k.decode() if isinstance(k, bytes) else str(k) for k in batch]
            # one more than shown is enough to say the list goes on
            if not cursor or len(found) > CANDIDATES_SHOWN:
                return found

    return await part.scripts.read(scan)


async def get_result(host: Host, task_id: str) -> Any:
    """The result of a completed task (as the handler returned it), without waiting.

    Raises
    ------
    NotFound
        No result: the task has not completed, or was pruned.
    """
    return await on_task(host, task_id, lambda p: p.tasks.result(task_id))


async def cancel_task(host: Host, task_id: str, reason: str = "cancelled") -> str:
    """Cancel a task that has not ended; its dependents end cancelled too.

    Returns
    -------
    str
        ``cancelled``, or the status it had already ended in.

    Raises
    ------
    NotFound, InvalidIdError
    """
    return await on_task(host, task_id, lambda p: p.tasks.cancel(task_id, reason))


async def wait_for(host: Host, task_id: str, timeout_s: float = 60.0) -> Any:
    """The task's result once completed, waiting without polling.

    Blocks on the completions stream (``XREAD BLOCK``), so a completion wakes the waiter at
    once; the record is read again at least every :data:`SAFETY_NET_S` (1 s), because a task
    that ends dead or cancelled adds no completion entry.

    Parameters
    ----------
    task_id:
        The id :func:`distribute_task` returned.
    timeout_s:
        Longest wait, in seconds.

    Raises
    ------
    TaskFailed
        It ended dead or cancelled.
    TimeoutError
        Not finished within ``timeout_s``, or Redis did not answer within it (an outage or a
        stall is waited out up to the deadline, not the reconnect window).
    NotFound
        No such task.
    """
    return await on_task(host, task_id, lambda p: _wait_for(p, task_id, timeout_s))


async def _wait_for(host: Part, task_id: str, timeout_s: float) -> Any:
    """:func:`wait_for` in the task's partition: its completions stream and records."""
    deadline = time.monotonic() + timeout_s
    # where the stream ended when this process submitted the task (decision 96): its
    # completion comes after, so the first step can block; else a first look learns it
    cursor: bytes | str | None = host.tasks.cursors.pop(task_id, None)
    block_ms = max(1, int(min(timeout_s, SAFETY_NET_S) * 1000))
    while True:
        # one round trip per step: woken by a completion, the record comes with it; an outage
        # or a stall is retried within the deadline only (else up to the reconnect window)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + STEP_GRACE_S):
                read, task, packed = await host.tasks.wait_step(task_id, cursor, block_ms)
        except TimeoutError as e:
            raise TimeoutError(f"task {task_id}: no reply from Redis within {timeout_s} s") from e
        if cursor is None:  # XREVRANGE: the stream's last entry
            cursor = read[0][0] if read else "0-0"
        else:  # XREAD: what was added after the cursor (None when it timed out)
            for _stream, entries in read or []:
                if entries:
                    cursor = entries[-1][0]
        if task.status == "completed":
            if packed is None:  # pruned between the two reads: say so as result() would
                return await host.tasks.result(task_id)
            return unpack(packed)
        if task.status in ("dead", "cancelled"):
            raise TaskFailed(task)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"task {task_id} still {task.status} after {timeout_s} s")
        block_ms = max(1, int(min(left, SAFETY_NET_S) * 1000))


async def result(host: Host, task_id: str, timeout_s: float = 60.0) -> Any:
    """``await ms.result(task_id)``: the same as :func:`wait_for`."""
    return await wait_for(host, task_id, timeout_s)


async def retry_tasks(
    host: Host, task_ids: Sequence[str] = (), *, status: str | None = None, limit: int = 1000
) -> dict[str, str]:
    """Make dead or cancelled tasks ready again, their attempts counted from zero.

    Parameters
    ----------
    task_ids:
        The tasks to retry.
    status:
        Also retry the newest ``limit`` tasks of this status (``dead`` or ``cancelled``).

    Returns
    -------
    dict
        Task id -> ``retried`` | ``not_found`` (or pruned) | ``status:<s>`` (it did not end
        dead or cancelled) | ``dependency:<id>`` (a dependency did not complete: its result
        would be missing).

    Raises
    ------
    InvalidArgumentError
        ``status`` is neither ``dead`` nor ``cancelled``.
    InvalidIdError
    """
    ids = list(task_ids)
    if status is not None:
        if status not in ("dead", "cancelled"):
            raise InvalidArgumentError(f"only dead or cancelled tasks are retried, not {status}")
        ids += [t.id for t in await list_tasks(host, status, limit) if t.id not in ids]
    if len(host.parts) == 1 or not ids:
        return await host.tasks.retry(ids) if ids else {}
    groups, missing = await group_tasks(host, ids)
    out = dict.fromkeys(missing, "not_found")
    for k, group in groups.items():
        out.update(await host.parts[k].tasks.retry(group))
    return {t: out[t] for t in ids if t in out}


async def purge_tasks(host: Host, status: str, older_than_ms: int = 0) -> tuple[int, Sequence[str]]:
    """Forget finished tasks of ``status`` that finished at least ``older_than_ms`` ms ago,
    before their retention ends; returns ``(purged, held)`` as
    :meth:`multiswarm.tasks.TaskStore.purge` (which documents the errors)."""
    if len(host.parts) == 1:
        return await host.tasks.purge(status, older_than_ms)
    each = await fan_out(host, lambda p: p.tasks.purge(status, older_than_ms))
    return sum(n for n, _ in each), [t for _, held in each for t in held]
