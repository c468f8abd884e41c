"""What a handler gets beside its payload (:class:`TaskContext`), and its progress reports.

A report is kept as its run's latest in this agent process, and a thread of its own sends the
latest report of each run to the worker through the agent's pipe (``(task_id, "progress",
(fraction, note))``, :mod:`multiswarm.agent_runtime`), at most every :data:`SEND_EVERY_S`. The
handler's own thread never writes the pipe: a stop raised in it (``TaskStopped``, by a signal
or in its thread) could otherwise land inside the write, leaving the pipe's lock held or a
frame half-written, and with them every other run of the agent (found in session 21's review).
The worker keeps the latest report of each run it holds and writes them to their task records
at most once a :data:`multiswarm.worker_progress.FLUSH_S`, in one call (``record_progress.lua``,
fenced by the run's token). Decision 128.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from multiswarm.errors import InvalidArgumentError

__all__ = ["MAX_NOTE_CHARS", "SEND_EVERY_S", "TaskContext", "report_to"]

#: A progress note is cut to this many characters (a status line, not a log).
MAX_NOTE_CHARS = 200
#: The sender's pause after each batch, in seconds: however often handlers report, an agent
#: sends at most ten batches a second (each the latest report of each run).
SEND_EVERY_S = 0.1

#: task id -> its latest report not sent yet (a dict store is atomic: no lock a stop can hold)
_latest: dict[str, tuple[float, str]] = {}
#: the write end of the sender's wake-up pipe (-1: no sender, outside an agent: reports are
#: dropped, so a handler called directly, in a test or a script, runs unchanged)
_wake = -1


def report_to(post: Callable[[Any], None] | None) -> None:
    """Send this process's progress reports with ``post`` (the agent's ``Outbox.post``) from a
    daemon thread, woken through a pipe; None stops sending (the thread ends)."""
    global _wake
    if _wake >= 0:
        with contextlib.suppress(OSError):
            os.close(_wake)  # the sender reads the end of its pipe and ends
        _wake = -1
    _latest.clear()
    if post is None:
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    threading.Thread(
        target=_send, args=(read_end, post), name="agent-progress", daemon=True
    ).start()
    _wake = write_end


def _send(read_end: int, post: Callable[[Any], None]) -> None:
    try:
        while os.read(read_end, 4096):  # wake-ups; b"": report_to closed the pipe
            for task_id in list(_latest):
                report = _latest.pop(task_id, None)
                if report is not None:
                    post((task_id, "progress", report))
            time.sleep(SEND_EVERY_S)
    except OSError:
        pass  # the worker went away: the agent ends with it
    finally:
        os.close(read_end)


class TaskContext(msgspec.Struct, frozen=True):
    """Second argument of every handler.

    Attributes
    ----------
    task_id, attempt:
        Which task and which attempt (1-based) this is.
    dependencies:
        Results of the tasks this one depends on, by task id.
    """

    task_id: str
    attempt: int
    dependencies: dict[str, Any]

    def progress(self, fraction: float, note: str = "") -> None:
        """Report how far this run has come: ``fraction`` of it done (0.0 to 1.0) and a short
        ``note`` (cut to :data:`MAX_NOTE_CHARS`), as Celery's ``update_state`` or RQ's
        ``job.meta`` do. The task record shows the latest report within about a second
        (``Task.progress``, ``progress_note``, ``progress_ms``: ``multiswarm-cli tasks show``,
        the HTTP API, the dashboard); a new attempt starts again from none. Cheap (a dict store
        and a wake-up; only the latest report of a run is sent, at most ten times a second),
        so it may be called as often as a handler likes. Does nothing outside a worker.

        Raises
        ------
        InvalidArgumentError
            ``fraction`` is not a number from 0 to 1.
        """
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0.0 <= fraction <= 1.0
            or math.isnan(fraction)
        ):
            raise InvalidArgumentError(f"progress must be a number from 0 to 1, not {fraction!r}")
        if _wake < 0:
            return
        _latest[self.task_id] = (float(fraction), str(note)[:MAX_NOTE_CHARS])
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is pending already
            os.write(_wake, b"\0")
