"""The task lifecycle, as typed calls over the task scripts (scripts/lua/*_task*.lua).

``pending`` (waiting on dependencies) -> ``ready`` -> ``assigned`` (swarm) -> ``running`` (worker,
lease) -> ``completed`` | ``failed`` -> ``ready`` after exponential backoff, or ``dead``
(dead-letter queue) after ``max_attempts``; ``cancelled`` from any non-terminal status, and for the
dependents of a task that ended dead or cancelled. Execution is at-least-once; the completion
record is exactly-once (finish_tasks.lua).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Sequence
from typing import Any

from multiswarm.errors import BadRequest, IllegalTransition, NotFound, ReplicaAckError
from multiswarm.keys import TASK_STATUSES, Keys, check_id
from multiswarm.messages import (
    Task,
    TaskSpec,
    check_settings,
    decode_task,
    encode_task_spec,
    pack,
    unpack,
)
from multiswarm.messenger import SwarmMessenger
from multiswarm.ops import tasks as ops
from multiswarm.ops.script import decode
from multiswarm.ops.tasks import Claimed as Claimed
from multiswarm.scripts import Scripts
from multiswarm.task_specs import MAX_RESULT_TTL_MS as MAX_RESULT_TTL_MS
from multiswarm.task_specs import MIN_LEASE_MS as MIN_LEASE_MS
from multiswarm.task_specs import task_spec as task_spec

log = logging.getLogger(__name__)

#: Largest payload accepted per task, in bytes (same limit as a message).
MAX_PAYLOAD_BYTES = 1024 * 1024
#: Tasks per submit_tasks.lua call: keeps one script run short (Redis serves nothing meanwhile):
#: 40-150 µs each (measured on a 2-CPU VM, the high end with 40,000 dependents of one
#: task), so a call holds Redis for under 10 ms.
SUBMIT_CHUNK = 50
#: Tasks whose completions cursor a TaskStore keeps for a waiter (:attr:`TaskStore.cursors`).
WAITER_CURSORS = 4096
#: Index entries one prune_tasks.lua call examines: 10-25 µs each (measured), so a call holds
#: Redis for 1-3 ms, and pruning still keeps up with >10,000 tasks per second.
PRUNE_BATCH = 100


class TaskStore:
    """Typed access to tasks in one namespace.

    Parameters
    ----------
    scripts:
        Bound scripts of a client.
    keys:
        Key names of the namespace.
    """

    def __init__(self, scripts: Scripts, keys: Keys) -> None:
        self.scripts = scripts
        self.keys = keys
        self.client = scripts.client
        #: wake-ups for the leader (task_submitted) and workers (task_cancelled)
        self.notices = SwarmMessenger(self.client, keys, sender="tasks")
        #: task id -> the completions stream's last entry id when it was submitted here: where
        #: a waiter reads from (tasks_api.wait_for); the oldest dropped beyond WAITER_CURSORS
        self.cursors: dict[str, str] = {}

    # -- producers -----------------------------------------------------------------------------
    async def submit(self, tasks: Sequence[tuple[TaskSpec, Any]]) -> dict[str, str]:
        """Submit ``(spec, payload)`` pairs; dependencies first. Returns id -> initial status.

        Batches above :data:`SUBMIT_CHUNK` go in several all-or-nothing calls, in order.

        Raises
        ------
        AlreadyExists, UnknownDependency, BadRequest, MessageTooLargeError
        """
        out: dict[str, str] = {}
        for start in range(0, len(tasks), SUBMIT_CHUNK):
            chunk = tasks[start : start + SUBMIT_CHUNK]
            encoded: list[tuple[bytes, bytes]] = []
            for spec, payload in chunk:
                check_settings(spec)
                try:
                    data = pack(payload)
                except (TypeError, ValueError, OverflowError) as e:  # (an int over 64 bits)
                    raise BadRequest(
                        "BAD_REQUEST", f"payload of {spec.id} is no MessagePack value: {e}"
                    ) from e
                if len(data) > MAX_PAYLOAD_BYTES:
                    raise BadRequest(
                        "BAD_REQUEST",
                        f"payload of {spec.id} is {len(data)} bytes encoded, above the limit "
                        f"of {MAX_PAYLOAD_BYTES} (1 MiB): pass a reference (path, URL) instead",
                    )
                encoded.append((encode_task_spec(spec), data))
            statuses, cursor = await ops.submit_tasks(self.scripts, self.keys, encoded)
            for (spec, _), status in zip(chunk, statuses):
                out[spec.id] = status
                # only a task this call created completes after the cursor: one that existed
                # (resubmitted) or was cancelled at once may have ended before it, and its
                # waiter would block out its first step before reading the record
                if status in ("ready", "pending"):
                    self.cursors[spec.id] = cursor
            while len(self.cursors) > WAITER_CURSORS:  # (insertion order: the oldest first)
                del self.cursors[next(iter(self.cursors))]
        # submit_tasks.lua woke the leader when a task is ready (multiswarm.wakeups)
        return out

    async def cancel(self, task_id: str, reason: str = "cancelled by operator") -> str:
        """Cancel a non-terminal task (and, transitively, its dependents). A running handler is
        stopped: the worker running it is told at once (``task_cancelled`` on ``<ns>:tasks``)
        and finds out at its next lease renewal at the latest.

        Returns ``cancelled`` or ``ended:<status>``. Raises NotFound.
        """
        outcome = await ops.cancel_task(
            self.scripts, self.keys, check_id(task_id, "task id"), reason
        )
        if outcome == "cancelled":
            await self.notices.publish(self.keys.ch_tasks, "task_cancelled", {"task": task_id})
        return outcome

    # -- workers -------------------------------------------------------------------------------
    async def claim(self, swarm_id: str, worker_id: str, count: int) -> list[Claimed]:
        """Lease up to ``count`` tasks from the swarm's queue. Raises WorkerUnknown.

        Tasks leased by a claim too few replicas acknowledged (``MULTISWARM_WAIT_REPLICAS``)
        are returned all the same, with a warning: they are this worker's on the master, and
        dropping them left them to expire unrun, an attempt each (decision 116)."""
        try:
            return await ops.claim_tasks(
                self.scripts, self.keys, swarm_id=swarm_id, worker_id=worker_id, count=count
            )
        except ReplicaAckError as e:
            log.warning("claim of swarm %s: %s; running its tasks all the same", swarm_id, e)
            return list(e.reply)

    async def claim_when_woken(
        self, swarm_id: str, worker_id: str, count: int, cursor: str, block_ms: int
    ) -> tuple[str | None, list[Claimed]]:
        """:meth:`claim`, run by Redis once the swarm's wake-up stream has an entry after id
        ``cursor`` (an assignment), or after ``block_ms`` (at most half the socket timeout).
        Only where :attr:`can_claim_when_woken`. Returns the newest entry id read (None:
        none) and the tasks leased. Raises WorkerUnknown."""
        return await ops.claim_tasks_when_woken(
            self.scripts,
            self.keys,
            swarm_id=swarm_id,
            worker_id=worker_id,
            count=count,
            wake=(cursor, block_ms),
        )

    @property
    def can_claim_when_woken(self) -> bool:
        """Whether :meth:`claim_when_woken` may be used (a plain or Sentinel client)."""
        return self.scripts.can_call_when_woken("claim_tasks")

    async def extend(self, worker_id: str, held: dict[str, str]) -> list[str]:
        """Renew leases of ``{task id: token}``, each by its task's own ``lease_ms``; returns
        ids whose lease was lost."""
        if not held:
            return []
        return await ops.extend_leases(self.scripts, self.keys, worker_id, held)

    async def record_progress(
        self, reports: Sequence[tuple[str, str, str, int, float | None, str, int]]
    ) -> int:
        """Write ``(task id, token, agent, start ms, fraction, note, report ms)`` of held runs
        (agent '' and fraction None: none); how many records were written (not a stale run's,
        nor a report older than the recorded one)."""
        return await ops.record_progress(self.scripts, self.keys, reports) if reports else 0

    async def complete(self, task_id: str, token: str, worker_id: str, result: Any) -> str:
        """Record the result once: ``completed`` | ``duplicate`` | ``ended:<status>``."""
        return await self.complete_packed(task_id, token, worker_id, pack(result))

    async def complete_packed(self, task_id: str, token: str, worker_id: str, data: bytes) -> str:
        """:meth:`complete` with a result already packed (msgpack bytes, stored as they are)."""
        return await self._finish_one(worker_id, ops.Outcome(task_id, token, "ok", data))

    async def fail(self, task_id: str, token: str, error: str, permanent: bool = False) -> str:
        """Record a failed attempt: ``retry`` | ``dead`` | ``stale``."""
        kind = "permanent" if permanent else "error"
        return await self._finish_one("", ops.Outcome(task_id, token, kind, error[:4000]))

    async def finish(self, worker_id: str, outcomes: Sequence[ops.Outcome]) -> list[str]:
        """Record many attempts' outcomes in one script call (a worker's group commit); one
        reply per outcome, in order (:func:`multiswarm.ops.tasks.finish_tasks`): problems with
        one task are replies (``not_found``, ``illegal:<status>``), not errors."""
        if not outcomes:
            return []
        try:
            return await ops.finish_tasks(
                self.scripts, self.keys, worker_id, outcomes, seed=random.getrandbits(31)
            )
        except ReplicaAckError as e:  # recorded on the master: as :meth:`claim` (decision 116)
            log.warning("outcomes of %d tasks: %s", len(outcomes), e)
            return list(e.reply)

    async def _finish_one(self, worker_id: str, outcome: ops.Outcome) -> str:
        (reply,) = await self.finish(worker_id, [outcome])
        if reply == "not_found":
            raise NotFound("NOT_FOUND", f"task {outcome.id}")
        if reply.startswith("illegal:"):
            status = reply.removeprefix("illegal:")
            raise IllegalTransition(
                "ILLEGAL_TRANSITION", f"task {outcome.id} {status} -> completed"
            )
        return reply

    async def release(self, held: dict[str, str]) -> int:
        """Hand running tasks back (clean shutdown); the attempt is not counted."""
        if not held:
            return 0
        return await ops.release_tasks(self.scripts, self.keys, held)

    # -- readers -------------------------------------------------------------------------------
    async def get(self, task_id: str) -> Task:
        """The task record. Raises NotFound, MessageDecodeError (corrupt record)."""
        tid = check_id(task_id, "task id")
        raw = await self.scripts.read(lambda: self.client.hget(self.keys.tasks, tid))
        if raw is None:
            raise NotFound("NOT_FOUND", f"task {task_id}")
        return decode_task(raw)

    async def get_with_result(self, task_id: str) -> tuple[Task, bytes | None]:
        """The task record and its stored (msgpack) result, None while there is none, in one
        round trip (a waiter's look once woken). finish_tasks.lua writes both in one script
        and the record is read first, so a record that says ``completed`` comes with its
        result (unless pruned in between). Raises NotFound, MessageDecodeError."""
        tid = check_id(task_id, "task id")
        raw, packed = await self.scripts.read_many(
            ("HGET", self.keys.tasks, tid), ("HGET", self.keys.results, tid)
        )
        if raw is None:
            raise NotFound("NOT_FOUND", f"task {task_id}")
        return decode_task(raw), None if packed is None else decode(packed, bytes)

    async def wait_step(
        self, task_id: str, cursor: bytes | str | None, block_ms: int
    ) -> tuple[Any, Task, bytes | None]:
        """One step of a waiter, in one round trip: ``XREAD BLOCK block_ms`` on the completions
        stream after ``cursor`` (``None``: ``XREVRANGE`` of its last entry instead, to learn
        where it ends), then the record and result as :meth:`get_with_result`. Redis runs a
        blocked client's pipelined commands once the ``XREAD`` returns, so the read of the
        record follows the completion that woke it without another round trip. Returns the
        stream reply, the record and the result. Raises NotFound, MessageDecodeError."""
        tid = check_id(task_id, "task id")
        stream = self.keys.completions
        # a block past the socket timeout would end in a read timeout, taken for an outage
        block_ms = max(1, min(block_ms, self.scripts.block_limit_ms))
        read, raw, packed = await self.scripts.read_many(
            ("XREVRANGE", stream, "+", "-", "COUNT", 1)
            if cursor is None
            else ("XREAD", "COUNT", 1000, "BLOCK", block_ms, "STREAMS", stream, cursor),
            ("HGET", self.keys.tasks, tid),
            ("HGET", self.keys.results, tid),
        )
        if isinstance(read, dict):  # RESP3's raw XREAD: {stream: entries}
            read = list(read.items())
        if raw is None:
            raise NotFound("NOT_FOUND", f"task {task_id}")
        return read, decode_task(raw), None if packed is None else decode(packed, bytes)

    async def get_many(self, task_ids: Sequence[str]) -> list[Task | None]:
        if not task_ids:
            return []
        raws = await self.scripts.read(lambda: self.client.hmget(self.keys.tasks, list(task_ids)))
        return [decode_task(r) if r is not None else None for r in raws]

    async def result(self, task_id: str) -> Any:
        """The decoded result of a completed task. Raises NotFound when there is none."""
        raw = await self.scripts.read(lambda: self.client.hget(self.keys.results, task_id))
        if raw is None:
            raise NotFound("NOT_FOUND", f"no result for task {task_id}")
        return unpack(decode(raw, bytes))

    async def results(self, task_ids: Sequence[str]) -> dict[str, Any]:
        """Results of the completed tasks among ``task_ids`` (others are absent)."""
        packed = await self.packed_results(task_ids)
        return {t: unpack(r) for t, r in zip(task_ids, packed) if r is not None}

    async def packed_results(self, task_ids: Sequence[str]) -> list[bytes | None]:
        """The stored (msgpack) results of ``task_ids``, in order; None where there is none."""
        if not task_ids:
            return []
        raws = await self.scripts.read(lambda: self.client.hmget(self.keys.results, list(task_ids)))
        return decode(raws, list[bytes | None])

    async def list(self, status: str | None = None, limit: int = 100) -> list[Task]:
        """Tasks of one status (or all), most recently updated first (ready, assigned and
        running ones come from their queues, decision 61: the last in line, the latest lease
        deadlines)."""
        statuses = [status] if status else list(TASK_STATUSES)
        for s in statuses:
            if s not in TASK_STATUSES:
                raise BadRequest("BAD_REQUEST", f"unknown status {s!r}; one of {TASK_STATUSES}")
        found: dict[str, Task] = {}
        for s in statuses:
            # the leases zset holds running tasks too: an assigned listing reads big pages
            page = max(limit, 1000 if s == "assigned" else 100)
            kept: list[Task] = []
            start = 0
            while len(kept) < limit:
                read = functools.partial(ops.status_ids, self.client, self.keys, s, start, page)
                ids = await self.scripts.read(read)
                kept += [t for t in await self.get_many(ids) if t is not None and t.status == s]
                if len(ids) < page:
                    break
                start += page
            found.update((t.id, t) for t in kept[:limit])
        tasks = sorted(found.values(), key=lambda t: t.updated_ms, reverse=True)
        return tasks[:limit]

    async def counts(self) -> dict[str, int]:
        """Number of tasks per status."""
        return await self.scripts.read(lambda: ops.status_counts(self.client, self.keys))

    async def stats(self) -> dict[str, int]:
        """Counters: submitted, completed, executions, retries, dead, cancelled, ..."""
        raw = await self.scripts.read(lambda: self.client.hgetall(self.keys.stats))
        return decode(raw, dict[str, int])

    async def prune(self, retention_ms: int, batch: int = PRUNE_BATCH) -> int:
        """Forget every finished task past its retention; returns how many were forgotten.

        Calls prune_tasks.lua, each call examining at most ``batch`` entries, until nothing is
        left that is due, so pruning keeps up with any completion rate while no single call
        holds Redis for long.

        Parameters
        ----------
        retention_ms:
            Deployment result TTL in milliseconds (``MULTISWARM_RESULT_TTL_MS``); a task's own
            ``result_ttl_ms`` replaces it. A completed task is also kept while a task that
            depends on it is unfinished.
        batch:
            Budget of one script call (index entries and dependents examined).
        """
        total, asof = 0, 0
        while True:
            # every call after the first judges as of the first one's server time, so the
            # round's work is fixed when it starts and the loop ends under any load
            round_ = await ops.prune_tasks(
                self.scripts, self.keys, retention_ms=retention_ms, batch=batch, asof=asof
            )
            total, asof = total + round_.pruned, round_.asof
            if not round_.more:
                return total
            await asyncio.sleep(0)  # let this process's other coroutines run between calls

    async def retry(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Make dead or cancelled tasks ready again, attempts reset (``tasks retry``).

        Returns
        -------
        dict
            id -> ``retried`` | ``not_found`` (or pruned) | ``status:<status>`` (not dead or
            cancelled) | ``dependency:<id>`` (a dependency did not complete).
        """
        ids = [check_id(t, "task id") for t in task_ids]
        out: dict[str, str] = {}
        for start in range(0, len(ids), SUBMIT_CHUNK):
            chunk = ids[start : start + SUBMIT_CHUNK]
            out.update(zip(chunk, await ops.retry_tasks(self.scripts, self.keys, chunk)))
        if "retried" in out.values():
            await self.notices.publish(self.keys.ch_tasks, "task_submitted", {"count": len(out)})
        return out

    async def purge(
        self, status: str, older_than_ms: int = 0, batch: int = PRUNE_BATCH
    ) -> tuple[int, Sequence[str]]:
        """Forget finished tasks of ``status`` (completed | dead | cancelled) that finished at
        least ``older_than_ms`` ago, before their retention ends (``tasks purge``).

        Returns
        -------
        (purged, held)
            How many were forgotten, and the completed ones kept because an unfinished task
            depends on them (it will read their result).

        Raises
        ------
        BadRequest
            ``status`` is not a terminal status, or ``older_than_ms`` is negative.
        """
        total = 0
        held: list[str] = []
        while True:
            call = await ops.purge_tasks(
                self.scripts,
                self.keys,
                status=status,
                older_than_ms=older_than_ms,
                batch=batch,
                skip=held,
            )
            total += call.purged
            held += [h for h in call.held.split(",") if h]
            if not call.more:
                return total, held
            await asyncio.sleep(0)
