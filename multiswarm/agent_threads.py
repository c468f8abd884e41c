"""The slot threads of a concurrent agent (:mod:`multiswarm.agent_runtime`): who reads the pipe,
and how a run read there reaches a thread with as few wake-ups as it can.

There are ``concurrency + 1`` threads; one at a time holds the reader role (``lead``: it reads
the pipe until it has a run of its own to run, or the pipe ends). A read of one run that finds
every other thread idle (a lone task) hands the role to one of them and runs that run itself:
it costs one wake-up, the pipe's, before its handler starts. Otherwise the runs are queued and
a thread that finishes its run takes the next without sleeping; an idle one is woken only when
no wake-up is under way already (a woken thread wakes the next if runs still wait). Each idle
thread sleeps on a lock of its own: a ``queue.SimpleQueue`` that several threads wait on wakes
a second waiter on every ``get`` for nothing. The extra thread keeps a reader while
``concurrency`` handlers run, so a stop is read at all times.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: Work for a slot thread; it returns the next one this thread is to do, or None.
Job = Callable[[], Any]


class _Thread:
    """An idle thread sleeps in ``wake.acquire()``; releasing it hands it ``job`` (None: the
    queue's next)."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.job: Job | None = None


class SlotThreads:
    """``concurrency + 1`` daemon threads; ``lead`` is the reader role (see the module).

    ``quiet`` is an exception a job may leak at its very end (a stop that landed as its handler
    returned): it must not end the thread."""

    def __init__(
        self, concurrency: int, lead: Callable[[], Job | None], quiet: type[BaseException]
    ) -> None:
        self.concurrency, self.lead, self.quiet = concurrency, lead, quiet
        self.mutex = threading.Lock()
        #: idle threads, the last one idle woken first (its stack and caches are warm)
        self.idle: list[_Thread] = []
        #: runs waiting for a thread
        self.pending: deque[Job] = deque()
        #: an idle thread is being woken for ``pending``
        self.waking = False

    def start(self) -> None:
        threads = [_Thread() for _ in range(self.concurrency + 1)]
        self.idle.extend(threads[1:])
        threads[0].job = self.lead
        threads[0].wake.release()
        for i, t in enumerate(threads):
            threading.Thread(target=self._serve, args=(t,), name=f"slot-{i}", daemon=True).start()

    def dispatch(self, jobs: list[Job], may_lead: bool) -> bool:
        """Queue the runs ``jobs`` (from the reader); or, one run, ``may_lead`` and every other
        thread idle, hand the reader role on and keep it: True, the caller runs ``jobs[0]``.
        (Several runs are queued: the role's hand-off would be one more wake-up.)"""
        with self.mutex:
            lead = may_lead and len(jobs) == 1 and len(self.idle) == self.concurrency
            reader = self.idle.pop() if lead else None
            if not lead:
                self.pending.extend(jobs)
            helper = None
            if self.pending and self.idle and not self.waking:
                helper = self.idle.pop()
                self.waking = True
        if reader is not None:
            reader.job = self.lead
            reader.wake.release()
        if helper is not None:
            helper.wake.release()
        return lead

    def _serve(self, me: _Thread) -> None:
        while True:
            me.wake.acquire()
            job, me.job = me.job, None
            if job is None:  # woken for the queue
                chain = None
                with self.mutex:
                    self.waking = False
                    job = self._next(me)
                    if job is not None and self.pending and self.idle:
                        chain = self.idle.pop()
                        self.waking = True
                if chain is not None:
                    chain.wake.release()
            while job is not None:
                run, job = job, None
                with contextlib.suppress(self.quiet):
                    job = run()
                if job is None:
                    with self.mutex:
                        job = self._next(me)

    def _next(self, me: _Thread) -> Job | None:
        """The next queued run, else ``me`` goes idle (checked and marked under one lock, so no
        thread sleeps past a queued run). Called holding ``mutex``."""
        if self.pending:
            return self.pending.popleft()
        self.idle.append(me)
        return None
