"""The pipe's sender (:class:`multiswarm.agent_pipe.Outbox`) under threads that post at once:
nothing queued is left behind when its poster found the pipe taken, and each thread's messages
arrive in its order."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

from multiswarm.agent_pipe import Frames, Outbox

THREADS, EACH = 4, 2000


def test_concurrent_posts_all_arrive_in_each_threads_order() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    out = Outbox(writer)
    got: list[Any] = []

    def read() -> None:
        frames = Frames(reader.fileno())
        while len(got) < THREADS * EACH + 1:
            batch = frames.read()
            assert batch is not None
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
    out.post(None)  # sent by whoever holds the pipe last, at the latest
    receiver.join(timeout=60)
    try:
        assert not receiver.is_alive()
        assert got[-1] is None  # posted last, so sent last
        for t in range(THREADS):
            assert [m[1] for m in got if m is not None and m[0] == t] == list(range(EACH))
        assert sum(1 for m in got if m is not None and len(m[2]) == 100_000) == THREADS * 4
    finally:
        reader.close()
        writer.close()
