"""A worker's claim loops: one per hosted swarm, with a prefetch window (mixin of ``Worker``).

Each loop claims tasks of its swarm as its agents' slots free (``claim_tasks.lua``), places them
on agents with the scheduling kernel and starts their runs. Claimed tasks may wait in a prefetch
window until a slot frees, leased and renewed like running ones (they are in ``held``) and handed
back on shutdown, so a freed slot starts the next task without a round trip and, under load,
claims come in batches rather than one per freed slot.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from multiswarm.errors import MultiswarmError, WorkerUnknown
from multiswarm.tasks import Claimed
from multiswarm.wakeups import wake_on
from multiswarm.worker_liveness import (
    CLAIM_SAFETY_S,
    HeldTask,
    WaitingClaim,
    WorkerLiveness,
    outcome_of,
)
from multiswarm.worker_metrics import WorkerMetrics

log = logging.getLogger(__name__)


class WorkerClaims(WorkerLiveness):
    """The claim loops (mixin of ``Worker``, which runs one per swarm)."""

    metrics: WorkerMetrics
    prefetched: dict[str, collections.deque[Claimed]]
    finishing: dict[str, int]
    drained: dict[str, bool]
    taken: int
    #: claimed tasks a claim loop may hold waiting for a free slot, per agent slot of its swarm
    #: (``Worker``'s ``prefetch``; Dramatiq prefetches 2 per worker thread, Celery 4 per
    #: process by default): a slot that frees starts the next task without a round trip, and
    #: claims come in batches under load. The swarm's capacity, (1 + prefetch) x slots, bounds
    #: it too: the leader assigns no more.
    prefetch: int
    #: per swarm, the id of the last entry of its wake-up stream seen (:meth:`_poll`)
    wake_cursors: dict[str, str]
    #: the worker's endless loops, and whether the wake-up subscription is among them
    _loops: list[asyncio.Task[None]]
    _subscribed: bool
    _failed: asyncio.Event

    async def _execute(self, swarm_id: str, index: int, c: Claimed) -> None:
        """Run claimed task ``c`` on agent ``index`` of ``swarm_id`` (``Worker`` implements it)."""
        raise NotImplementedError

    def _subscribe_wakeups(self) -> None:
        """Be woken by the ``PUBLISH`` of assignments (:func:`wake_on`), where claims cannot
        wait in Redis for them (:meth:`_poll`: a cluster client, or an ACL without
        ``XREAD``); once."""
        if self._subscribed or not self._loops:
            return
        self._subscribed = True
        name = "wake-up loop"
        channels = {self.keys.wake_swarm(s): w for s, w in self.wake.items()}
        self._loops.append(
            asyncio.create_task(wake_on(self.client, self.keys, channels), name=name)
        )
        self._watch(self._loops[-1], name, endless=True)

    def _watch(self, task: asyncio.Task[None], name: str, *, endless: bool) -> None:
        """Keep ``task`` and end the worker if it fails (``Worker`` implements it)."""
        raise NotImplementedError

    def _post_outcome(self, swarm_id: str, c: Claimed, kind: str, data: Any) -> None:
        """Hand a run's outcome (``ok`` result bytes, ``error`` or ``permanent`` text) to the
        group commit without waiting; until its reply the task stays in ``held`` (leased,
        renewed, handed back on shutdown) and counts as finishing in the claim window."""
        self.finishing[swarm_id] += 1
        self.outcomes.post(
            outcome_of(c, kind, data), lambda reply: self._recorded(swarm_id, c, kind, data, reply)
        )

    def _recorded(
        self, swarm_id: str, c: Claimed, kind: str, data: Any, reply: str | BaseException
    ) -> None:
        """The group commit's reply for a posted outcome, as :meth:`_finish` and the run's
        error handling take it: logged, counted, the task no longer held."""
        self.finishing[swarm_id] -= 1
        if isinstance(reply, Exception) and not isinstance(reply, MultiswarmError):
            # a bug or an unexpected reply: fail the attempt (the task stays held meanwhile)
            t = asyncio.get_running_loop().create_task(
                self._fail_attempt(c, reply, release=True), name=f"failing task {c.id}"
            )
            self._running.add(t)
            t.add_done_callback(self._run_ended)
            return
        self._unhold(c)
        if isinstance(reply, str) and not reply.startswith(("not_found", "illegal:")):
            self._count(swarm_id, c, kind, data, reply)
        elif reply == "not_found":
            log.warning("task %s vanished while running", c.id)
        elif not isinstance(reply, asyncio.CancelledError):  # cancelled: shutting down
            log.error("could not record task %s (its lease will expire): %s", c.id, reply)
        # a recorded outcome leaves room in the window
        self._wake_if_work(swarm_id)

    def _wake_if_work(self, swarm_id: str) -> None:
        """Wake the claim loop of ``swarm_id`` after a slot or window room freed, when tasks
        wait prefetched or may wait queued (its last claim did not empty the queue)."""
        if self.prefetched[swarm_id] or not self.drained.get(swarm_id, False):
            self.wake[swarm_id].set()

    def _run_ended(self, t: asyncio.Task[None]) -> None:
        """A run's one done callback (runs are many: not :meth:`_spawn`'s two and a closure):
        forget it, and a run that raised ends the worker as any of its loops would."""
        self._running.discard(t)
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None and self._failure is None:
            self._failure = (t.get_name(), exc)
            self._failed.set()

    def _room(self, swarm_id: str) -> tuple[int, int, int]:
        """The free slots of ``swarm_id``'s usable agents, its prefetch window, and how many
        tasks a claim may take now."""
        # only usable agents count: tasks prefetched for agents being restarted would wait
        # here while another worker could run them
        free, slots = self.placement[swarm_id].slots()
        window = self.prefetch * slots
        # runs whose slot is free again but whose outcome is not recorded yet still hold
        # their task: at most slots + window tasks held, whatever stage each is at
        want = free + window - len(self.prefetched[swarm_id]) - self.finishing[swarm_id]
        return free, window, want

    async def _claim_loop(self, swarm_id: str, stop: asyncio.Event) -> None:
        """Claim tasks of ``swarm_id`` as agents' slots free, with a prefetch window (module
        docstring, ``prefetch``): claimed tasks wait in ``prefetched`` until a slot
        frees, leased and renewed like running ones, and handed back on shutdown."""
        wake = self.wake[swarm_id]
        swarm = self.placement[swarm_id]
        prefetched = self.prefetched[swarm_id]
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            wake.clear()  # before looking: a wake-up from now on means look again
            free, window, want = self._room(swarm_id)
            claimed: list[Claimed] = []
            poll = self.polls.get(swarm_id)
            asked = 0
            try:
                if poll is not None:
                    # a claim waiting for an assignment (it asked for poll.want): while it
                    # waits, the queue is empty and nothing else is claimed
                    if poll.task.done():
                        del self.polls[swarm_id]
                        asked, claimed = poll.want, poll.task.result()
                # claim when a slot would idle, or half the window is empty: under load claims
                # come in batches instead of one per freed slot
                elif want > 0 and (len(prefetched) < free or 2 * want >= window):
                    # looking now: a waiting claim armed meanwhile (a _poll scheduled by the
                    # last iteration) would take the same room a second time
                    self.drained[swarm_id] = False
                    asked, claimed = want, await self.tasks.claim(swarm_id, self.id, want)
                else:  # not looked: tasks may be queued
                    self.drained[swarm_id] = False
            except WorkerUnknown:
                await self._rejoin()
                await asyncio.sleep(0.1)
                continue
            except MultiswarmError as e:
                log.warning("claim failed: %s", e)
                await asyncio.sleep(0.5)
                continue
            if asked:
                # a claim takes what it asks for while the queue holds any: fewer means it is
                # empty now, and a freed slot need not look until an assignment
                self.drained[swarm_id] = len(claimed) < asked
                if self.metrics.enabled:
                    self.metrics.claimed(self.tasks, swarm_id, [c.id for c in claimed])
            self.taken += len(claimed)
            for c in claimed:
                old = self.held.get(c.id)
                if old is not None and old.claimed is not c:
                    # claimed again while an earlier claim of it is held here: its record moved
                    # on (cancelled and retried, not heard of yet), so that claim is stale, and
                    # its run is stopped before this one starts (decision 102)
                    self.stop_task(c.id)
                self.held[c.id] = HeldTask(c, swarm_id)
                prefetched.append(c)
            # a prefetched task whose lease was lost or that was cancelled left `held`; the
            # same task claimed again since (retried) is held by its new claim, which may
            # carry the same token (attempts reset): the claim itself must still be the held one
            ready: list[Claimed] = []
            ending: list[Claimed] = []
            while prefetched and len(ready) < free:
                c = prefetched.popleft()
                if self.holds(c):
                    # one run of a task at a time: a stale one still ending goes first
                    (ending if c.id in self._handlers else ready).append(c)
            prefetched.extendleft(reversed(ending))
            unplaced: dict[str, str] = {}
            for c, pick in zip(ready, swarm.place_claimed(ready) if ready else []):
                if pick < 0:
                    self._unhold(c)
                    unplaced[c.id] = c.token
                    continue
                t = loop.create_task(self._execute(swarm_id, pick, c), name=f"run of task {c.id}")
                self._running.add(t)
                t.add_done_callback(self._run_ended)
            if unplaced:  # no healthy agent after all: hand back, attempt not counted
                try:
                    await self.tasks.release(unplaced)
                except MultiswarmError as e:
                    log.warning(
                        "could not hand back %s (their leases will expire): %s", list(unplaced), e
                    )
            if asked == 0 or len(claimed) < asked:
                # nothing asked, or the queue ran dry (a claim takes what it asks for while
                # there is any): wait to be woken by an assignment, a finished run, or the
                # worker's one safety net; on stop, shutdown cancels this loop
                if self.drained.get(swarm_id) and swarm_id not in self.polls:
                    # after the runs just started have written to their agents' pipes (the
                    # next turn): the wait's own send is not on their path (decision 95)
                    loop.call_soon(self._poll, swarm_id)
                await wake.wait()

    def _poll(self, swarm_id: str) -> None:
        """With the queue found empty, leave a claim waiting in Redis for the next assignment
        to the swarm (:meth:`~multiswarm.tasks.TaskStore.claim_when_woken`): Redis runs it as
        the assignment's wake-up entry arrives, with no round trip to this process between
        them, and its reply wakes the claim loop. It asks for the room there is now (slots
        freed later are claimed for by the loop once it replies); the wait is the claim
        loop's safety net (:data:`CLAIM_SAFETY_S`). Without a plain or Sentinel client the
        loop is woken by the assignment's ``PUBLISH`` instead (:func:`wake_on`)."""
        if swarm_id in self.polls or not self.drained.get(swarm_id) or self._shutting_down:
            return  # (a claim since the loop asked for it found work, or one waits already)
        if not self.tasks.can_claim_when_woken:
            self._subscribe_wakeups()
            return
        want = self._room(swarm_id)[2]
        if want <= 0:
            return
        task = asyncio.ensure_future(self._claim_when_woken(swarm_id, want))
        task.add_done_callback(lambda _: self.wake[swarm_id].set())
        self.polls[swarm_id] = WaitingClaim(task, want)

    async def _claim_when_woken(self, swarm_id: str, want: int) -> list[Claimed]:
        cursor = self.wake_cursors.get(swarm_id, "0-0")
        woken, claimed = await self.tasks.claim_when_woken(
            swarm_id, self.id, want, cursor, int(CLAIM_SAFETY_S * 1000)
        )
        if woken is not None:
            self.wake_cursors[swarm_id] = woken
        return claimed
