"""What a worker tells the task records about its runs beyond their outcomes: the latest
progress report of each run (:meth:`multiswarm.task_context.TaskContext.progress`, decision
128), and, for a run still going a :data:`FLUSH_S` after it started, the agent it runs on and
when it started (decision 130). All of it in one call at most once a :data:`FLUSH_S`.

These are views, not state the system acts on: a report lost with its worker, or to an outage,
is only a stale line until the next; so the writer keeps no more than one report and one start
per held run, drops those of runs it no longer holds, and logs a failed write without retrying.
Runs shorter than :data:`FLUSH_S` write nothing: the hot path pays two dict operations a run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from multiswarm.errors import MultiswarmError
from multiswarm.tasks import TaskStore

__all__ = ["FLUSH_S", "ProgressWriter", "RunReport"]

log = logging.getLogger(__name__)

#: How often, at most, a worker writes its runs' reports, and how long a run goes before its
#: agent and start are written, in seconds (what a live view needs: ``tasks list --watch`` and
#: the dashboard refresh about once a second).
FLUSH_S = 1.0

#: One run's line for ``record_progress.lua``: task id, token, agent ('' for none), how long ago
#: the run started (ms), fraction (None for no report), note, how long ago it was reported (ms).
#: Ages, not times: the script dates them by Redis's clock, as every other time of a record.
RunReport = tuple[str, str, str, int, float | None, str, int]


def _ago_ms(monotonic_s: float) -> int:
    return max(0, int((time.monotonic() - monotonic_s) * 1000))


class ProgressWriter:
    """``note`` a run's progress report (from its agent's pipe), ``started``/``ended`` its run;
    a :data:`FLUSH_S` after the first unwritten one, the latest report of each held run, and the
    agent and start of each held run that is still going, are written in one call, fenced by
    the claim's token (``token_of``: the token of the claim this worker holds of a task, None
    once it holds none)."""

    def __init__(self, tasks: TaskStore, token_of: Callable[[str], str | None]) -> None:
        self.tasks, self.token_of = tasks, token_of
        #: task id -> (token of the run, fraction, note, when in monotonic s): the latest
        #: report not yet written, with the claim it was made under
        self.pending: dict[str, tuple[str, float, str, float]] = {}
        #: task id -> (agent, start in monotonic s) of runs whose start is not written yet
        self.runs: dict[str, tuple[str, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None

    def note(self, task_id: str, report: Any) -> None:
        """Keep ``report`` (``(fraction, note)``) as ``task_id``'s latest; arm the write."""
        try:
            fraction, text = float(report[0]), str(report[1])
        except (TypeError, ValueError, IndexError):
            return  # not what TaskContext.progress sends
        token = self.token_of(task_id)
        if token is not None:  # (its claim's: a later attempt's record is not this run's)
            self.pending[task_id] = (token, fraction, text, time.monotonic())
            self._arm()

    def started(self, task_id: str, agent_id: str) -> None:
        self.runs[task_id] = (agent_id, time.monotonic())
        self._arm()

    def ended(self, task_id: str) -> None:
        """The run is over: what it did not write yet is not written (its outcome says more,
        and a report of it must not land on the task's next attempt)."""
        self.runs.pop(task_id, None)
        self.pending.pop(task_id, None)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._writing is not None and not self._writing.done():
            self._arm()  # the last write still waits on Redis (an outage): this one after it
            return
        self._writing = asyncio.ensure_future(self.write())

    def _due(self) -> list[RunReport]:
        """The reports to write now; runs too young to write stay, and re-arm the timer."""
        pending, self.pending = self.pending, {}
        cutoff = time.monotonic() - FLUSH_S
        due = {t for t, (_, began) in self.runs.items() if began <= cutoff} | set(pending)
        out: list[RunReport] = []
        for task_id in due:
            report = pending.get(task_id)
            token = report[0] if report is not None else self.token_of(task_id)
            if token is None:
                self.runs.pop(task_id, None)
                continue
            agent, began = self.runs.pop(task_id, ("", 0.0))
            start_ago = _ago_ms(began) if agent else 0
            if report is None:
                out.append((task_id, token, agent, start_ago, None, "", 0))
            else:
                _, fraction, text, at = report
                out.append((task_id, token, agent, start_ago, fraction, text, _ago_ms(at)))
        if self.runs:
            self._arm()
        return out

    async def write(self) -> None:
        """Write what is due (see the class), in one call."""
        reports = self._due()
        if not reports:
            return
        try:
            await self.tasks.record_progress(reports)
        except MultiswarmError as e:
            log.warning("could not write the progress of %d runs: %s", len(reports), e)

    def close(self) -> None:
        """Drop what is pending (the worker is leaving: its runs are handed back)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pending.clear()
        self.runs.clear()
