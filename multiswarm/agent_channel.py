"""The worker's end of the pipe to one agent process: the runs waiting for replies, read by the
event loop when the pipe is readable (:class:`Channel`, used by :mod:`multiswarm.agents`)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from multiswarm.agent_pipe import ExitWatch, Frames, Outbox

__all__ = ["EXPIRED", "Channel", "blocked_why", "expire"]

log = logging.getLogger(__name__)

#: What a run's future holds once its timeout passed (no reply is this object).
EXPIRED: tuple[str, Any] = ("expired", None)


#: Reply kinds that end no run (:mod:`multiswarm.agent_runtime`): ``blocked`` names the blocker,
#: ``unblocked`` (no task id) clears it, ``progress`` is a run's report.
_NOTICES = frozenset({"blocked", "unblocked", "progress"})


def blocked_why(killed: str) -> str:
    """The error of a run whose async handler blocked its agent's event loop until the agent
    was killed (``killed``: why, e.g. to stop another task) -- a handler's bug, so it counts."""
    return (
        f"its async handler blocked the agent's event loop until the agent was killed ({killed});"
        " run blocking work in a thread (asyncio.to_thread) or in a sync handler"
    )


def expire(future: asyncio.Future[tuple[str, Any]]) -> None:
    if not future.done():
        future.set_result(EXPIRED)


class Channel:
    """The pipe to one agent process and the runs waiting for its replies.

    Messages go out through an :class:`~multiswarm.agent_pipe.Outbox`: those posted in one
    turn of the event loop leave in one write. Replies are read by the event loop itself when
    the pipe is readable (one read, no thread to wake), and resolve their runs' futures; when
    the pipe ends, each run still waiting gets ``lost`` if the worker killed the process on
    purpose (``killed``), else ``error`` (the process died under it).

    A run whose future was cancelled or expired may still wait for its reply (to a stop): the
    reply then lands in a new future, :meth:`waiter`."""

    def __init__(
        self,
        proc: multiprocessing.process.BaseProcess,
        conn: Connection,
        on_progress: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.proc, self.conn = proc, conn
        #: where a run's progress reports go (``TaskContext.progress``): the worker's writer
        self.on_progress = on_progress
        self.out, self.frames = Outbox(conn), Frames(conn.fileno())
        self.watch = ExitWatch(proc.sentinel)
        self.pending: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.killed = ""
        #: the pipe ended: the process is gone (or going)
        self.ended = False
        #: what every run waiting from now on gets, once the pipe ended
        self.end_reply: tuple[str, Any] | None = None
        #: the run whose async handler holds the agent's event loop, as the agent names it
        #: while a stop waits for the loop (``blocked``), until the loop turns (``unblocked``)
        self.blocker = ""
        self._flushing = False

    def listen(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.loop is not loop:  # the first run, or the first in a new event loop
            self._stop_listening()
            self.loop = loop
            loop.add_reader(self.conn.fileno(), self._read)

    def _read(self) -> None:
        """The pipe is readable: this read does not block (the loop is its only reader)."""
        try:
            replies = self.frames.read()
        except (OSError, ValueError):  # also nothing to read (draining); garbled, truncated
            replies = None
        if replies is None:
            self._stop_listening()
            self.ended = True
            self.end_runs()
            return
        for task_id, kind, data in replies:
            if kind in _NOTICES:
                if kind == "progress":
                    if self.on_progress is not None and task_id in self.pending:
                        self.on_progress(task_id, data)
                else:
                    self.blocker = task_id
            else:
                self._resolve(task_id, (kind, data))

    def _stop_listening(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())

    def drain(self) -> None:
        """Take the replies still in the pipe of a process that is gone, without blocking (a
        process it forked may hold the pipe open), then stop listening."""
        if self.loop is None or self.ended:
            return
        os.set_blocking(self.conn.fileno(), False)
        while not self.ended:  # until the end of the pipe, or nothing more to read now
            self._read()

    def _resolve(self, task_id: str, reply: tuple[str, Any]) -> None:
        future = self.pending.get(task_id)
        if future is None:
            return
        if future.done():
            if not future.cancelled() and future.result() is not EXPIRED:
                return  # it has its reply
            future = self.pending[task_id] = future.get_loop().create_future()
        future.set_result(reply)

    def waiter(self, task_id: str) -> asyncio.Future[tuple[str, Any]]:
        """The future the reply of ``task_id`` lands in from now on."""
        future = self.pending.get(task_id)
        if future is not None and not (
            future.done() and (future.cancelled() or future.result() is EXPIRED)
        ):
            return future
        future = self.pending[task_id] = asyncio.get_running_loop().create_future()
        if self.end_reply is not None:
            future.set_result(self.end_reply)
        return future

    def end_runs(self) -> None:
        if self.killed:
            self.end_reply = ("lost", self.killed)
        else:
            self.end_reply = ("error", f"agent {self.proc.name} process died")
        for task_id in list(self.pending):
            if task_id == self.blocker and self.killed:
                # the kill was for the loop it held: its attempt counts, the others' do not
                self._resolve(task_id, ("error", blocked_why(self.killed)))
            else:
                self._resolve(task_id, self.end_reply)

    def post(self, msg: Any) -> None:
        """Send ``msg`` (small) at the end of this turn of the event loop, with the others."""
        self.out.queue.append(msg)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        try:
            self.out.flush()
        except (EOFError, OSError) as e:
            # the process died: the loop sees the pipe end and fails the runs it held
            log.debug("agent %s: pipe write failed: %r", self.proc.name, e)
