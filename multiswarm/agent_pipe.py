"""The framing of the worker <-> agent pipe, and the sender both ends share.

Each pipe message is one pickled list of messages (:mod:`multiswarm.agent_runtime` lists them):
whatever one end has ready when it writes goes in one write and costs the other end one read and
one wake-up. :class:`Outbox` is how a message is written: whoever holds the pipe also sends what
the others queued meanwhile, so no thread waits for another's write unless it chooses to.
"""

from __future__ import annotations

import os
import pickle
import select
import threading
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from multiswarm.errors import MessageDecodeError

#: Pickle protocol of the pipe (both ends run this package, same interpreter).
PROTOCOL = pickle.HIGHEST_PROTOCOL


#: Bytes one read asks for (below malloc's mmap threshold: no mmap per read), unless more of a
#: large message is due: then up to :data:`LARGE_READ_BYTES`.
READ_BYTES = 65536
LARGE_READ_BYTES = 4 * 1024 * 1024


class Frames:
    """The messages read from the pipe ``fd``, in the framing of ``Connection.send_bytes`` (a
    4-byte big-endian size, or -1 and an 8-byte size, then the bytes): one read takes whatever
    the pipe holds, several messages or part of one, instead of two reads per message."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        #: bytes still due of the message in ``buf``
        self.due = 0

    def read(self) -> list[Any] | None:
        """One read (it blocks only if the pipe is empty): the messages it completed, in order
        (maybe none yet); None at the end of the pipe. Raises OSError, ValueError (a message
        that does not decode)."""
        data = os.read(self.fd, max(READ_BYTES, min(self.due, LARGE_READ_BYTES)))
        if not data:
            return None
        self.buf += data
        out: list[Any] = []
        buf = self.buf
        self.due = 0
        while len(buf) >= 4:
            size, start = int.from_bytes(buf[:4], "big", signed=True), 4
            if size == -1:
                if len(buf) < 12:
                    break
                size, start = int.from_bytes(buf[4:12], "big"), 12
            end = start + size
            if len(buf) < end:
                self.due = end - len(buf)
                break
            try:
                with memoryview(buf) as view, view[start:end] as frame:
                    out.extend(pickle.loads(frame))
            except Exception as e:  # nothing after it can be trusted either
                raise MessageDecodeError(f"unreadable pipe message: {e!r}") from e
            del buf[:end]  # a bytearray drops its head without moving the rest
        return out


class Outbox:
    """Messages waiting for the pipe ``conn``, sent in order, several per write.

    :meth:`post` queues a message and sends the queue if the pipe is free; if a send holds it,
    that sender sends the queue after its own write (it looks again after releasing the pipe,
    so nothing queued is left behind). A send may block while the other end's buffer is full:
    an event loop posts only small messages (the other end reads at all times), and a large one
    goes through :meth:`post_waiting` from a thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.queue: deque[Any] = deque()

    def post(self, msg: Any) -> None:
        """Queue ``msg``; send the queue unless another thread is sending (it sends ours).
        Raises OSError (BrokenPipeError) if the pipe broke under this call's own write."""
        self.queue.append(msg)
        if self.lock.acquire(blocking=False):
            self._send_and_release()

    def post_waiting(self, *msgs: Any) -> None:
        """Send the queue, then ``msgs``, from this thread, waiting for the pipe if need be: a
        large message must not be written by whoever happens to flush the queue (so it is
        queued only by the pipe's holder). Raises OSError if the pipe broke."""
        self.lock.acquire()
        self.queue.extend(msgs)
        self._send_and_release()

    def flush(self) -> None:
        """Send the queue if the pipe is free (else its holder does)."""
        if self.queue and self.lock.acquire(blocking=False):
            self._send_and_release()

    def _send_and_release(self) -> None:
        # called holding the lock; only the holder pops, so the queue drains in order
        while True:
            try:
                batch = [self.queue.popleft() for _ in range(len(self.queue))]
                if batch:
                    self.conn.send_bytes(pickle.dumps(batch, PROTOCOL))
            finally:
                self.lock.release()
            # a message queued while we sent, by a thread that found the pipe taken
            if not self.queue or not self.lock.acquire(blocking=False):
                return


class ExitWatch:
    """Whether a child process still runs, from its ``sentinel`` (readable, or closed, once it
    exited) by one poll(2) on a poll object kept for it: ``Process.is_alive`` builds a selector
    per call under forkserver (~6.5 µs against ~0.6), and the worker asks for every agent per
    claim and per placement. ``running`` False only says to ask ``is_alive`` (which reaps)."""

    def __init__(self, sentinel: int) -> None:
        self.poll = select.poll()
        self.poll.register(sentinel, select.POLLIN)

    def running(self) -> bool:
        try:
            return not self.poll.poll(0)
        except RuntimeError:  # another thread polls it now: let is_alive say
            return False
