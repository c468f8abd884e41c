"""multiswarm.agent_threads: the reader role, lone runs, queued runs, at most ``concurrency``."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from multiswarm.agent_threads import Job, SlotThreads


class _Pipe:
    """A fake pipe: ``lead`` reads batches of jobs put here (None: the pipe ends)."""

    def __init__(self, concurrency: int) -> None:
        self.batches: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        self.readers: list[str] = []
        self.threads = SlotThreads(concurrency, self.lead, KeyboardInterrupt)

    def lead(self) -> Job | None:
        while (jobs := self.batches.get()) is not None:
            self.readers.append(threading.current_thread().name)
            if self.threads.dispatch(jobs, True):
                return jobs[0]
        return None


def _wait(cond: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "not reached"
        time.sleep(0.001)


def test_a_lone_run_runs_on_the_thread_that_read_it() -> None:
    pipe = _Pipe(2)
    pipe.threads.start()
    ran: list[str] = []
    for i in range(5):
        pipe.batches.put([lambda: ran.append(threading.current_thread().name)])
        _wait(lambda: len(ran) > i)  # noqa: B023 - waited for within this iteration
        _wait(lambda: len(pipe.threads.idle) == 2)  # everyone back, the next run is lone too
    assert ran == pipe.readers  # each run on its reader's thread
    assert len(set(ran)) > 1  # and the reader role moved on


def test_queued_runs_all_run_and_never_more_than_concurrency_at_once() -> None:
    pipe = _Pipe(3)
    pipe.threads.start()
    lock = threading.Lock()
    full = threading.Event()  # set once 3 run at once: until then, each run waits for it
    running = peak = done = 0

    def job() -> None:
        nonlocal running, peak, done
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 3:
                full.set()
        full.wait(10)  # fewer than 3 slots would never set it: the wait below fails then
        with lock:
            running -= 1
            done += 1

    for i in range(40):
        pipe.batches.put([job] * (1 + i % 4))
    total = sum(1 + i % 4 for i in range(40))
    _wait(lambda: done == total, timeout_s=20)
    assert full.is_set() and peak == 3


def test_a_blocked_slot_leaves_a_reader() -> None:
    pipe = _Pipe(2)
    pipe.threads.start()
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> None:
        started.release()
        gate.wait(10)

    pipe.batches.put([blocked])
    pipe.batches.put([blocked])
    assert started.acquire(timeout=5) and started.acquire(timeout=5)
    # both slots busy: a third run waits, yet the reader still reads (a stop would be seen)
    third = threading.Event()
    pipe.batches.put([third.set])
    _wait(lambda: len(pipe.readers) == 3)
    assert not third.is_set()
    gate.set()
    assert third.wait(5)
