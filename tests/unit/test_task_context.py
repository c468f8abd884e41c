"""TaskContext.progress: what it sends to the worker, what it refuses, and nothing outside a
worker (decision 128)."""

from __future__ import annotations

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


def test_a_report_goes_to_the_worker_with_its_note_cut(sent: list[Any]) -> None:
    CTX.progress(0.25, "parsing")
    CTX.progress(1, "x" * (MAX_NOTE_CHARS + 50))
    assert sent == [("t1", "progress", (0.25, "parsing")), ("t1", "progress", (1.0, "x" * 200))]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_a_fraction_outside_0_1_is_refused(sent: list[Any], bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="progress must be a number from 0 to 1"):
        CTX.progress(bad)
    assert sent == []


def test_outside_a_worker_a_report_does_nothing() -> None:
    task_context.report_to(None)
    CTX.progress(0.5, "no worker")  # no error, nowhere to go
