"""The pipe's sender (:class:`multiswarm.agent_pipe.Outbox`) under threads that post at once:
nothing queued is left behind when its poster found the pipe taken (no later post sends it), and each thread's messages
arrive in its order."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from multiprocessing.connection import Connection
from typing import Any, cast

from multiswarm.agent_pipe import ExitWatch, Frames, Outbox

THREADS, EACH = 4, 2000


def test_concurrent_posts_all_arrive_in_each_threads_order() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    out = Outbox(writer)
    got: list[Any] = []

    def read() -> None:
        frames = Frames(reader.fileno())
        while len(got) < THREADS * EACH:
            batch = frames.read()
            if batch is None:
                return
            got.extend(batch)

    def post(t: int) -> None:
        for i in range(EACH):
            if i % 500 == 499:
                out.post_waiting((t, i, b"x" * 100_000))  # a large one, waiting for the pipe
            else:
                out.post((t, i, b""))

    receiver = threading.Thread(target=read, daemon=True)
    receiver.start()
    posters = [threading.Thread(target=post, args=(t,)) for t in range(THREADS)]
    for p in posters:
        p.start()
    for p in posters:
        p.join()
    # no post after the last ones: what they queued was sent by the pipe's holders
    receiver.join(timeout=30)
    try:
        assert not receiver.is_alive(), f"{THREADS * EACH - len(got)} messages left behind"
        for t in range(THREADS):
            assert [m[1] for m in got if m[0] == t] == list(range(EACH))
        assert sum(1 for m in got if len(m[2]) == 100_000) == THREADS * 4
    finally:
        reader.close()
        writer.close()


class _SlowPipe:
    """A pipe whose first write lets another thread post meanwhile (it finds the pipe taken)."""

    def __init__(self) -> None:
        self.out: Outbox | None = None
        self.sent: list[Any] = []

    def send_bytes(self, data: bytes) -> None:
        first = not self.sent
        self.sent.extend(pickle.loads(data))
        if first and self.out is not None:
            poster = threading.Thread(target=self.out.post, args=("late",))
            poster.start()
            poster.join()


def test_a_message_posted_during_a_write_goes_with_the_next_one() -> None:
    pipe = _SlowPipe()
    out = pipe.out = Outbox(cast(Connection, pipe))
    out.post("first")
    assert pipe.sent == ["first", "late"]  # sent by the holder, after it released the pipe
    assert not out.queue and not out.lock.locked()


def test_exit_watch_follows_the_process_sentinel() -> None:
    """running() until the child exits, then False (and is_alive, which reaps, agrees)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=child.recv)  # blocks until the parent sends
    proc.start()
    watch = ExitWatch(proc.sentinel)
    assert watch.running() and proc.is_alive()
    parent.send(None)
    proc.join()
    assert not watch.running()
    assert not proc.is_alive()
