"""What a handler gets beside its payload (:class:`TaskContext`), and its progress reports.

A report goes from the agent to its worker through the agent's pipe (``(task_id, "progress",
(fraction, note))``, :mod:`multiswarm.agent_runtime`); the worker keeps the latest report of
each run it holds and writes them to their task records at most once a
:data:`multiswarm.worker_progress.FLUSH_S`, in one call (``record_progress.lua``, fenced by the
run's token: a stale run's report is dropped). Decision 128.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import msgspec

from multiswarm.errors import InvalidArgumentError

__all__ = ["MAX_NOTE_CHARS", "TaskContext", "report_to"]

#: A progress note is cut to this many characters (a status line, not a log).
MAX_NOTE_CHARS = 200

#: Where reports go in this process: the agent's pipe (None outside an agent: reports are
#: dropped, so a handler called directly, in a test or a script, runs unchanged).
_post: Callable[[Any], None] | None = None


def report_to(post: Callable[[Any], None] | None) -> None:
    """Send this process's progress reports with ``post`` (the agent's ``Outbox.post``)."""
    global _post
    _post = post


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
        the HTTP API, the dashboard); a new attempt starts again from none. Cheap (a message
        to the worker, which writes only the latest report of each run), but meant for a few
        calls a second, not one per item of a tight loop. Does nothing outside a worker.

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
        post = _post
        if post is not None:
            with contextlib.suppress(OSError):  # the worker went away: the run ends anyway
                post((self.task_id, "progress", (float(fraction), str(note)[:MAX_NOTE_CHARS])))
