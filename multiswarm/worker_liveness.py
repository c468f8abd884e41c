"""The worker's liveness: registration, heartbeats, progress reports, lease renewals, leaving.

A mixin of :class:`multiswarm.worker.Worker`, kept apart so each module stays small. Each duty is
a loop of its own, so none delays another: heartbeats every third of the heartbeat timeout and
nothing else (a slow state save must not get a healthy worker reaped), progress (per-swarm state
and reconciling members) at the same pace, and lease renewals every third of each task's own
lease, looked for often enough for the shortest lease held. On the way out: stop claiming,
drain, hand back what still runs, leave the registry.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import time
from typing import Any, NamedTuple

from redis.asyncio import Redis

from multiswarm.config import Settings
from multiswarm.errors import MultiswarmError, NotFound, RedisUnavailable, ReplicaAckError
from multiswarm.ops.tasks import Outcome
from multiswarm.registry import SwarmSpec
from multiswarm.state import SwarmStateManager
from multiswarm.tasks import MIN_LEASE_MS, Claimed, TaskStore
from multiswarm.worker_members import WorkerMembers
from multiswarm.worker_outcomes import GroupCommit

log = logging.getLogger("multiswarm.worker")

#: How often a worker looks whether any of its swarms' queues holds tasks its claim loops were
#: not told about (a lost notification), in seconds: one command per worker, whatever its
#: swarms; assignments and completions wake the claim loops at once.
CLAIM_SAFETY_S = 2.0


class HeldTask:
    """A claimed task this worker runs, and when its lease was last renewed (monotonic s)."""

    __slots__ = ("claimed", "renewed", "swarm")

    def __init__(self, claimed: Claimed, swarm: str) -> None:
        self.claimed = claimed
        self.swarm = swarm
        self.renewed = time.monotonic()


class WaitingClaim(NamedTuple):
    """A claim waiting in Redis for an assignment to its swarm (``WorkerClaims._poll``): its
    task, and how many tasks it asked for."""

    task: asyncio.Task[list[Claimed]]
    want: int


def outcome_of(c: Claimed, kind: str, data: Any) -> Outcome:
    """The group commit's record of attempt ``c``: ``ok`` with the result bytes as the agent
    packed them, ``error`` or ``permanent`` with the error text cut to 4,000 characters."""
    return Outcome(c.id, c.token, kind, data if kind == "ok" else data[:4000])


class WorkerLiveness(WorkerMembers):
    """Registration, heartbeats, progress and lease renewals (mixin of ``Worker``)."""

    settings: Settings
    specs: list[SwarmSpec]
    tasks: TaskStore
    outcomes: GroupCommit
    state: SwarmStateManager
    held: dict[str, HeldTask]
    #: per swarm, a claim waiting in Redis for an assignment
    polls: dict[str, WaitingClaim]
    #: per swarm, claimed tasks waiting for a free agent slot (multiswarm.worker_claims)
    prefetched: dict[str, collections.deque[Claimed]]
    completed: int
    failed: int
    recent: dict[str, collections.deque[str]]
    _handlers: dict[str, asyncio.Task[Any]]
    _stopped: set[str]
    _running: set[asyncio.Task[None]]
    _shutting_down: bool
    _failure: tuple[str, BaseException] | None
    grace_s: float
    client: Redis
    wake: dict[str, asyncio.Event]

    def _token_of(self, task_id: str) -> str | None:
        """The token of this worker's claim of ``task_id``, None if it holds none."""
        held = self.held.get(task_id)
        return held.claimed.token if held is not None else None

    def holds(self, c: Claimed) -> bool:
        """Whether claim ``c`` itself is held, not only its task: a task handed back, failed or
        cancelled and retried may be claimed again by this worker (by a claim that waited in
        Redis, at once), and two claims of one task compare equal when its attempts were reset
        (the same token)."""
        held = self.held.get(c.id)
        return held is not None and held.claimed is c

    def _unhold(self, c: Claimed) -> None:
        """Forget held claim ``c``, not a later claim of the same task (:meth:`holds`): the
        task may be claimed again before the reply of the hand-back reaches this worker."""
        if self.holds(c):
            del self.held[c.id]

    def stop_task(self, task_id: str) -> bool:
        """Stop the handler of ``task_id`` if it runs here (cancelled, or its lease was lost):
        cooperatively first, then by killing its agent (:meth:`AgentProcess.run`), and free the
        agent. Nothing is recorded: the task's record has moved on. True if one was running."""
        held = self.held.get(task_id)
        # prefetched, not started: its claim loop drops it (by identity: an earlier claim of
        # the task still waiting there compares equal to a later one, :meth:`holds`); a run of
        # an earlier claim that may still be ending was stopped when this claim came
        waiting = self.prefetched.get(held.swarm, ()) if held is not None else ()
        if held is not None and any(c is held.claimed for c in waiting):
            del self.held[task_id]
            return False
        run = self._handlers.get(task_id)
        if run is None or run.done():
            return False
        if task_id not in self._stopped:  # (a stop under way is not cancelled a second time)
            self._stopped.add(task_id)
            run.cancel()
        return True

    async def _stop_if_cancelled(self, task_id: str) -> None:
        """A ``task_cancelled`` notice is only a hint (anyone may publish): stop the handler
        when the record confirms this attempt no longer holds the task."""
        held = self.held.get(task_id)
        if held is None:
            return
        try:
            task = await self.tasks.get(task_id)
        except NotFound:
            task = None
        if task is None or task.status != "running" or task.token != held.claimed.token:
            self.stop_task(task_id)

    async def register(self) -> None:
        """Become host of this worker's swarms (host_swarms.lua) and wake the leader."""
        info = {"host": socket.gethostname(), "pid": os.getpid(), "agents": len(self.agents)}
        before = await self.registry.host_swarms(self.id, info, self.specs)
        log.info("worker %s hosts %s", self.id, before)
        await self.messenger.publish(self.keys.ch_tasks, "swarm_changed", {"worker": self.id})

    async def _rejoin(self) -> None:
        """Register again after the registry declared this worker dead.

        Redis being unreachable is retried by the caller's loop; a refusal (a ScriptError, e.g.
        a swarm that cannot be hosted) propagates and stops the worker: it must not linger,
        beating and claiming nothing.
        """
        log.warning("declared dead by the registry; registering again")
        try:
            await self.register()
        except RedisUnavailable as e:
            log.warning("could not register again (retrying): %s", e)
        except ReplicaAckError as e:  # registered on the master: go on (decision 116)
            log.warning("registered again, %s", e)

    def _report(self) -> tuple[dict[str, Any], float]:
        used, total, share = self.memory.load() if self.memory else (0, 0, 0.0)
        report: dict[str, Any] = {
            "running": len(self.held),
            "agents": len(self.agents),
            "completed": self.completed,
            "failed": self.failed,
            "mem_used": used,
            "mem_total": total,
            "agent_states": self.member_states(),
        }
        return report, share

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        """Beat every third of the heartbeat timeout, and nothing else: a slow state save or
        reconcile (the progress loop) must not delay a beat and get a healthy worker reaped."""
        period = self.settings.heartbeat_timeout_ms / 3000
        while not stop.is_set():
            started = time.monotonic()
            alive = True
            try:
                report, share = self._report()
                alive = await self.registry.heartbeat(self.id, report, share)
            except MultiswarmError as e:
                log.warning("heartbeat failed: %s", e)
            if not alive:
                await self._rejoin()
            await _wait(stop, period - (time.monotonic() - started))

    async def _listen(self) -> None:
        """Notifications on the tasks channel: a cancel stops its running handler, a scale
        changes a swarm's members (assignments wake the claim loops: multiswarm.wakeups)."""
        async for _ch, env in self.messenger.listen([self.keys.ch_tasks]):
            # a notice it could not act on (Redis unreachable past the reconnect window, an
            # undecodable record) is left to the lease renewal and the reconcile loop: it must
            # not end this loop, whose end stops the worker
            try:
                if env.type == "task_cancelled" and isinstance(env.payload.get("task"), str):
                    await self._stop_if_cancelled(env.payload["task"])
                elif env.type == "swarm_scaled" and env.target in self.placement:
                    swarm = await self.registry.get(env.target)
                    await self._scale_to(swarm.id, swarm.max_agents, swarm.external)
            except MultiswarmError as e:
                log.warning("could not act on %s (%s): %s", env.type, env.target or env.payload, e)

    async def _claim_safety_net(self, stop: asyncio.Event) -> None:
        """Wake every claim loop when some hosted swarm's queue holds tasks (one ``EXISTS``
        over all queues: an empty queue is no key) or tasks wait prefetched (for an agent being
        restarted), every :data:`CLAIM_SAFETY_S`."""
        queues = [self.keys.queue(sid) for sid in self.wake]
        while not stop.is_set():
            await _wait(stop, CLAIM_SAFETY_S)
            try:
                queued = await self.tasks.scripts.read(lambda: self.client.exists(*queues))
            except MultiswarmError as e:
                log.warning("could not look at the queues: %s", e)
                continue
            # prefetched tasks wait for an agent being restarted: look once it may be back
            if queued or any(self.prefetched.values()):
                for wake in self.wake.values():
                    wake.set()

    async def _progress(self, stop: asyncio.Event) -> None:
        """Save this worker's progress into each swarm's state and reconcile its members with
        the swarms' targets, at the heartbeat's pace but in a loop of their own."""
        period = self.settings.heartbeat_timeout_ms / 3000
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._save_progress()
                await self._reconcile()
            except MultiswarmError as e:
                log.warning("saving progress failed: %s", e)
            await _wait(stop, period - (time.monotonic() - started))

    async def _save_progress(self) -> None:
        """Versioned per-swarm state: what this worker holds and has done, per swarm."""
        now_ms = int(time.time() * 1000)
        for spec in self.specs:
            mine = {
                "running": sorted(t for t, h in self.held.items() if h.swarm == spec.id),
                "agents": spec.max_agents,
                "agent_ids": [a.agent_id for a in self.placement[spec.id].agents],
                "completed": list(self.recent[spec.id]),
                "at_ms": now_ms,
            }
            await self.state.update_state(
                spec.id, functools.partial(_merge_progress, self.id, spec.id, mine)
            )

    async def _finish(self, swarm_id: str, c: Claimed, kind: str, data: Any) -> None:
        """Record an attempt's outcome: ``ok`` (result bytes, already packed by the agent),
        ``error`` or ``permanent`` (error text), batched with others (:class:`GroupCommit`)."""
        outcome = await self.outcomes.record(outcome_of(c, kind, data))
        self._count(swarm_id, c, kind, data, outcome)

    def _count(self, swarm_id: str, c: Claimed, kind: str, data: Any, outcome: str) -> None:
        """Count and log a recorded outcome (``outcome``: finish_tasks.lua's reply)."""
        if kind == "ok":
            self.completed += outcome == "completed"
            self.recent[swarm_id].append(c.id)
        else:
            self.failed += 1
            log.info("task %s failed (%s): %s", c.id, outcome, data.splitlines()[-1:])

    async def _fail_attempt(self, c: Claimed, e: Exception, *, release: bool = False) -> None:
        """A bug or an unexpected reply while running or recording ``c``: fail this attempt
        now rather than leave the task running until its lease runs out; it retries after
        backoff, or ends dead. ``release``: the task then leaves ``held``."""
        log.error("task %s: unexpected error in worker %s", c.id, self.id, exc_info=e)
        try:
            outcome = await self.tasks.fail(
                c.id, c.token, f"worker {self.id} error: {type(e).__name__}: {e}"
            )
            log.info("task %s failed (%s)", c.id, outcome)
        except MultiswarmError as e2:
            log.error("could not fail task %s (its lease will expire): %s", c.id, e2)
        finally:
            if release:
                self._unhold(c)

    def _renew_tick_s(self) -> float:
        """How often the renewal loop looks for due leases: often enough for the shortest
        lease held (a twelfth of it, so a renewal is at most a quarter late), at most 250 ms."""
        shortest = min((h.claimed.lease_ms for h in self.held.values()), default=MIN_LEASE_MS)
        return max(0.02, min(0.25, shortest / 12_000))

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        """Renew each held task's lease once a third of it has passed; extend_leases.lua renews
        each by the task's own lease_ms, so tasks of different leases share one call."""
        while not stop.is_set():
            now = time.monotonic()
            due = {
                tid: h
                for tid, h in self.held.items()
                if now - h.renewed >= h.claimed.lease_ms / 3000
            }
            if due:
                try:
                    lost = await self.tasks.extend(
                        self.id, {t: h.claimed.token for t, h in due.items()}
                    )
                    # the new lease runs from about when we asked, not from the reply
                    for h in due.values():
                        h.renewed = now
                    # a lease lost by a claim this worker no longer holds (the task was
                    # claimed again meanwhile: :meth:`holds`) says nothing of the new claim
                    lost = [t for t in lost if t in due and self.holds(due[t].claimed)]
                    if lost:
                        log.info("leases lost for %s: stopping their handlers", lost)
                        for tid in lost:
                            self.stop_task(tid)
                except MultiswarmError as e:
                    log.warning("lease renewal failed: %s", e)
            await _wait(stop, self._renew_tick_s())

    async def _shut_down(
        self,
        claimers: list[asyncio.Task[None]],
        loops: list[asyncio.Task[None]],
        drained: asyncio.Event,
    ) -> None:
        """Stop claiming, drain (at once after a failure), hand back, leave. Every step runs even
        if one before it failed: a worker that stops must not keep tasks or a registration."""
        self._shutting_down = True
        failure = self._failure
        if failure is not None:
            log.error(
                "worker %s: its %s failed; handing back its tasks and leaving",
                self.id,
                failure[0],
                exc_info=failure[1],
            )
        await _cancel(claimers)
        await self._stop_waiting_claims()
        await self._drain(0.0 if failure else self.grace_s)
        try:  # a clean leave records that nothing is running any more
            await self._save_progress()
        except Exception as e:
            log.warning("could not save final progress: %s", e)
        drained.set()
        await _cancel(loops)
        await self._leave()

    async def _stop_waiting_claims(self) -> None:
        """Cancel the claims waiting in Redis for an assignment; the tasks of one that replied
        are held, so that they are handed back. One that ran as it was cancelled leased its
        tasks to this worker all the same: the clean leave hands those back
        (``reap_workers``, attempts not counted)."""
        waiting = [w.task for w in self.polls.values()]
        swarms = list(self.polls)
        self.polls.clear()
        await _cancel(waiting)
        for sid, t in zip(swarms, waiting):
            if t.done() and not t.cancelled() and t.exception() is None:
                for c in t.result():
                    self.held[c.id] = HeldTask(c, sid)
                    self.prefetched[sid].append(c)  # (not started: handed back first)

    async def _drain(self, grace_s: float) -> None:
        # tasks claimed but not started (prefetched, or claimed as the claims were cancelled)
        # go back first: held through the grace, they waited for nothing while other hosts
        # idled (found in review). Not a task whose run ended: its outcome may be in flight.
        idle = {c.id: c.token for queue in self.prefetched.values() for c in queue if self.holds(c)}
        for queue in self.prefetched.values():
            queue.clear()
        for tid in idle:
            del self.held[tid]
        if idle:
            await self._hand_back(idle)
        self.progress.close()
        if self.gate is not None:
            self.gate.close()  # a task waiting for room in the pool goes back too
        if self._running and grace_s > 0:
            log.info("waiting up to %.0f s for %d in-flight tasks", grace_s, len(self._running))
            await asyncio.wait(self._running, timeout=grace_s)
        held = {tid: h.claimed.token for tid, h in self.held.items()}
        for t in self._running:
            t.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await self.outcomes.close()  # outcomes first: a handed-back task may have finished
        if held:
            await self._hand_back(held)

    async def _hand_back(self, held: dict[str, str]) -> None:
        try:
            n = await self.tasks.release(held)
            log.info("handed back %d unfinished tasks", n)
        except MultiswarmError as e:
            log.warning("could not hand back tasks (their leases will expire): %s", e)

    async def _leave(self) -> None:
        try:
            await self.registry.reap_workers(0, worker_id=self.id, graceful=True)
        except Exception as e:
            log.warning("could not leave the registry: %s", e)
        try:
            await self._stop_members()
        finally:
            if self.memory is not None:
                self.memory.close()  # unlinks the shared segment
            await self.client.aclose()


def _merge_progress(
    worker_id: str, swarm_id: str, mine: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    """Put this worker's entry into a swarm's state, leaving other workers' entries alone."""
    workers = dict(data.get("workers", {}))
    workers[worker_id] = mine
    return {**data, "swarm": swarm_id, "workers": workers}


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` passed (at once if it is not positive)."""
    if timeout_s > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=timeout_s)


async def _cancel(tasks: list[asyncio.Task[Any]], wait_s: float = 5.0) -> None:
    """Cancel ``tasks`` and wait for them, but not forever: redis-py can swallow a cancellation
    that lands while a pub/sub read times out (the listener then blocks in a read with no
    timeout). Such a task is cancelled once more and left; closing the client ends its read."""
    for t in tasks:
        t.cancel()
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=wait_s)
    for t in pending:
        log.warning("%s did not stop within %.0f s of being cancelled", t.get_name(), wait_s)
        t.cancel()


#: How :func:`log_run` names a run's outcome.
_OUTCOMES = {"ok": "completed", "error": "failed", "permanent": "failed permanently"}


def log_run(c: Claimed, swarm_id: str, agent_id: str, kind: str, run_s: float) -> None:
    """The one INFO line per finished run of a task (what ran where, how long, how it ended)."""
    if log.isEnabledFor(logging.INFO):  # one a task: no arguments built when it is off
        log.info(
            "task %s handler=%s swarm=%s agent=%s attempt=%d run=%.3fs outcome=%s",
            *(c.id, c.handler, swarm_id, agent_id, c.attempts, run_s, _OUTCOMES.get(kind, kind)),
        )
