"""A worker's group commit of attempt outcomes: many results and failures in one script call.

Each finished run hands its outcome to :meth:`GroupCommit.record` and waits for its own reply.
While one ``finish_tasks.lua`` call is in flight, the outcomes that arrive wait and go together in
the next call (group commit, as databases batch their log writes: Gray and Reuter, *Transaction
Processing*, 1992, §9.4). There is no timer: an outcome arriving while nothing is in flight is sent
two turns of the event loop later (outcomes read meanwhile join it), or at once when no other run
is under way (nothing could join it), so a lone task pays no wait, and under load the calls per
task fall by the batch size. Each outcome is still recorded
exactly once: the script keeps the first result of a task (request id on the call, first result
wins across attempts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from multiswarm.errors import IllegalTransition, NotFound
from multiswarm.ops.tasks import Outcome
from multiswarm.tasks import TaskStore

log = logging.getLogger(__name__)

#: Most outcomes in one finish_tasks.lua call: ~30 µs of Redis time each (measured on the
#: bench's no-op tasks), so a full call holds Redis for well under 10 ms.
MAX_BATCH = 128

#: What :meth:`GroupCommit.post` calls back with an outcome's reply, or what recording raised.
Sink = Callable[[str | BaseException], None]


class GroupCommit:
    """Records outcomes of ``worker_id``'s attempts through ``tasks``, batched while a call is
    in flight (module docstring). finish_tasks.lua itself wakes the leader
    (:mod:`multiswarm.wakeups`).

    Parameters
    ----------
    tasks:
        The task store whose :meth:`~multiswarm.tasks.TaskStore.finish` records a batch.
    worker_id:
        Named on each completion in the completions stream.
    lone:
        True when no run but the one posting is under way: its outcome is sent at once.
    """

    def __init__(
        self, tasks: TaskStore, worker_id: str, lone: Callable[[], bool] = lambda: False
    ) -> None:
        self.tasks = tasks
        self.worker_id = worker_id
        self.lone = lone
        self._pending: list[tuple[Outcome, Sink]] = []
        self._flusher: asyncio.Task[None] | None = None

    def post(self, outcome: Outcome, done: Sink) -> None:
        """Hand over one outcome without waiting for it (no future, no task per outcome):
        ``done`` is called once, on the event loop, with its reply
        (:meth:`~multiswarm.tasks.TaskStore.finish`: ``not_found`` and ``illegal:<status>``
        are replies here) or with what recording raised (``asyncio.CancelledError`` if the
        flush was cancelled). It must not raise."""
        self._pending.append((outcome, done))
        if self._flusher is None or self._flusher.done():
            flush = self._flush(gather=not self.lone())
            self._flusher = asyncio.create_task(flush, name="group commit of outcomes")

    async def record(self, outcome: Outcome) -> str:
        """Record one outcome; its reply (:meth:`~multiswarm.tasks.TaskStore.finish`).

        Raises
        ------
        NotFound
            The task is gone (purged or pruned while it ran).
        IllegalTransition
            A result for a task that never ran.
        MultiswarmError
            The batch could not be recorded (Redis unreachable past the retry window): the
            leases of its tasks expire and they run again.
        """
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def done(reply: str | BaseException) -> None:
            if future.done():
                return
            if isinstance(reply, asyncio.CancelledError):
                future.cancel()
            elif isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

        self.post(outcome, done)
        # a waiter cancelled meanwhile (its task was stopped) leaves its outcome in the batch
        reply = await future
        if reply == "not_found":
            raise NotFound("NOT_FOUND", f"task {outcome.id}")
        if reply.startswith("illegal:"):
            raise IllegalTransition(
                "ILLEGAL_TRANSITION", f"task {outcome.id} {reply[8:]} -> {outcome.kind}"
            )
        return reply

    async def _flush(self, gather: bool) -> None:
        # two turns of the event loop first, so outcomes of replies read meanwhile (the other
        # agents' pipes) join the batch: ~10 % fewer calls under load (decision 69); no timer.
        # Not when no other run is under way: a round trip would wait for nothing (decision 95)
        try:
            if gather:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        except asyncio.CancelledError as e:
            batch, self._pending = self._pending, []
            _deliver(batch, e)
            raise
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            outcomes = [o for o, _ in batch]
            try:
                replies = await self.tasks.finish(self.worker_id, outcomes)
            except asyncio.CancelledError as e:
                # and those queued behind it: no flush is left to send them (found in review)
                batch, self._pending = batch + self._pending, []
                _deliver(batch, e)
                raise
            except Exception as e:  # each waiter reports it (the leases expire, runs repeat)
                _deliver(batch, e)
                continue
            for (_, done), reply in zip(batch, replies, strict=True):
                _call(done, reply)

    async def close(self) -> None:
        """Wait for the outcomes handed over so far to be recorded (or to fail)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)


def _deliver(batch: list[tuple[Outcome, Sink]], error: BaseException) -> None:
    for _, done in batch:
        _call(done, error)


def _call(done: Sink, reply: str | BaseException) -> None:
    # one sink that raises must not cost the rest of the batch their replies
    try:
        done(reply)
    except Exception:
        log.exception("an outcome's callback raised")
