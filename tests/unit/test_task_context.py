"""TaskContext.progress: what it sends to the worker, what it refuses, and nothing outside a
worker (decision 128)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from multiswarm import task_context
from multiswarm.errors import InvalidArgumentError
from multiswarm.task_context import MAX_NOTE_CHARS, TaskContext

CTX = TaskContext(task_id="t1", attempt=1, dependencies={})


@pytest.fixture
def sent() -> Iterator[list[Any]]:
    out: list[Any] = []
    task_context.report_to(out.append)
    yield out
    task_context.report_to(None)


def _until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_report_goes_to_the_worker_with_its_note_cut(sent: list[Any]) -> None:
    CTX.progress(0.25, "parsing")
    _until(lambda: sent)
    CTX.progress(1, "x" * (MAX_NOTE_CHARS + 50))
    _until(lambda: len(sent) == 2)
    assert sent == [("t1", "progress", (0.25, "parsing")), ("t1", "progress", (1.0, "x" * 200))]


def test_reports_in_a_tight_loop_are_coalesced_to_the_latest(sent: list[Any]) -> None:
    """A handler reporting per item must not flood its agent's pipe (found in session 21's
    review: 110,000 reports in 2 s took ~45 % of the worker's CPU): the sender sends the latest
    report of each run, a batch at most every SEND_EVERY_S, and the last one always arrives."""
    for i in range(20_000):
        CTX.progress(i / 20_000, "item")
    CTX.progress(1.0, "done")
    _until(lambda: sent and sent[-1][2] == (1.0, "done"))
    assert sent[-1] == ("t1", "progress", (1.0, "done"))
    assert len(sent) < 1_000  # before: one send a report, 20,001


def test_the_handler_s_thread_never_writes_the_pipe(sent: list[Any]) -> None:
    """A stop raised in the handler's thread must not land inside a pipe write (a held lock,
    a half-written frame): the reports go from the sender's thread."""
    threads: list[str] = []
    task_context.report_to(lambda msg: threads.append(threading.current_thread().name))
    CTX.progress(0.5)
    _until(lambda: threads)
    assert threads == ["agent-progress"]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_a_fraction_outside_0_1_is_refused(sent: list[Any], bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="progress must be a number from 0 to 1"):
        CTX.progress(bad)
    time.sleep(0.05)
    assert sent == []


def test_outside_a_worker_a_report_does_nothing() -> None:
    task_context.report_to(None)
    CTX.progress(0.5, "no worker")  # no error, nowhere to go


async def test_a_run_s_unwritten_report_is_not_written_onto_the_next_attempt() -> None:
    """A report noted under one claim and not written when its run ended was kept, and the
    next flush wrote it with the task's current claim: onto the task's next attempt (found in
    session 21's review). A report keeps its claim's token, and an ended run's is dropped."""
    from multiswarm.worker_progress import ProgressWriter

    written: list[Any] = []

    class Store:
        async def record_progress(self, reports: Any) -> int:
            written.extend(reports)
            return len(reports)

    tokens = {"t1": "1@w1"}
    writer = ProgressWriter(Store(), tokens.get)  # type: ignore[arg-type]
    writer.started("t1", "s.a0")
    writer.note("t1", (0.5, "first run"))
    writer.ended("t1")
    tokens["t1"] = "2@w1"  # claimed again: the next attempt
    writer.started("t1", "s.a1")
    await writer.write()
    assert written == []  # the new run is younger than FLUSH_S and has reported nothing
    writer.note("t1", (0.1, "second run"))
    await writer.write()
    assert [(r[0], r[1], r[4], r[5]) for r in written] == [("t1", "2@w1", 0.1, "second run")]
    writer.close()
