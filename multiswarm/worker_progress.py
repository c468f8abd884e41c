"""A worker's writer of its runs' progress reports (:meth:`multiswarm.agents.TaskContext.progress`,
decision 128): the latest report of each run, written to the task records at most once a
:data:`FLUSH_S`, all in one call.

Progress is a view, not state the system acts on: a report lost with its worker, or to an
outage, is only a stale bar until the next; so the writer keeps no more than one report per
held run, drops those of runs it no longer holds, and logs a failed write without retrying it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from multiswarm.errors import MultiswarmError
from multiswarm.tasks import TaskStore

__all__ = ["FLUSH_S", "ProgressWriter"]

log = logging.getLogger(__name__)

#: How often, at most, a worker writes its runs' reports, in seconds (what a live view needs:
#: ``tasks show`` and the dashboard refresh about once a second).
FLUSH_S = 1.0


class ProgressWriter:
    """``note`` a run's report (from its agent's pipe); the latest of each run is written a
    :data:`FLUSH_S` after the first unwritten one, fenced by its claim's token (``token_of``:
    the token of the claim this worker holds of a task, None once it holds none)."""

    def __init__(self, tasks: TaskStore, token_of: Callable[[str], str | None]) -> None:
        self.tasks, self.token_of = tasks, token_of
        #: task id -> (fraction, note, when in ms): the latest report not yet written
        self.pending: dict[str, tuple[float, str, int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        #: reports written, and those a write refused as stale (the tests and metrics read them)
        self.written = 0

    def note(self, task_id: str, report: Any) -> None:
        """Keep ``report`` (``(fraction, note)``) as ``task_id``'s latest; arm the write."""
        try:
            fraction, text = float(report[0]), str(report[1])
        except (TypeError, ValueError, IndexError):
            return  # not what TaskContext.progress sends
        self.pending[task_id] = (fraction, text, int(time.time() * 1000))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._writing is not None and not self._writing.done():
            # the last write still waits on Redis (an outage): this one comes after it
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._flush)
            return
        self._writing = asyncio.ensure_future(self.write())

    async def write(self) -> None:
        """Write the pending reports of the runs still held, in one call."""
        pending, self.pending = self.pending, {}
        reports = []
        for task_id, (fraction, text, ms) in pending.items():
            token = self.token_of(task_id)
            if token is not None:
                reports.append((task_id, token, fraction, text, ms))
        if not reports:
            return
        try:
            self.written += await self.tasks.record_progress(reports)
        except MultiswarmError as e:
            log.warning("could not write the progress of %d runs: %s", len(reports), e)

    def close(self) -> None:
        """Drop what is pending (the worker is leaving: its runs are handed back)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pending.clear()
