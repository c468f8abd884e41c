"""What :func:`multiswarm.task_specs.task_spec` lets through: the one check every submission
(Python API, CLI, HTTP API) goes through before anything reaches Redis."""

from __future__ import annotations

import pytest

from multiswarm.errors import BadRequest
from multiswarm.task_specs import task_spec

#: The caps task_spec enforces (literal here, so the test reads the same before and after).
MAX_HANDLER_CHARS = 256
MAX_NAME_CHARS = 1024


@pytest.mark.parametrize(
    "handler",
    [
        "multiswarm.demo_tasks:noop",
        "m:f",
        "tests.handlers.registered:named",
        "_private.mod:Class.method",
        pytest.param("a" * (MAX_HANDLER_CHARS - 2) + ":f", id="longest"),
    ],
)
def test_handlers_a_worker_could_register_are_accepted(handler: str) -> None:
    assert task_spec(handler).handler == handler


@pytest.mark.parametrize(
    "handler",
    [
        "a b:c",
        "a b c/d:hhhh",
        "multiswarm.demo_tasks:noop\u0000",
        "multiswarm.demo_tasks:noop ",
        "my-app.tasks:parse",
        "pkg.mod:fn:extra",
        "1pkg:fn",
        "pkg:",
        ":fn",
        "nocolon",
        pytest.param("a" * (MAX_HANDLER_CHARS - 1) + ":f", id="one-too-long"),
        pytest.param("m:" + "h" * 1_000_000, id="1MB"),
    ],
)
def test_a_handler_no_worker_can_run_is_refused(handler: str) -> None:
    """Found in the HTTP review: only ``:`` with two non-empty sides was checked, so a handler
    no worker can ever register (space, NUL, dash, 1 MB long) was accepted and parked forever."""
    with pytest.raises(BadRequest, match="handler"):
        task_spec(handler)


def test_a_name_is_capped() -> None:
    """Found in the HTTP review: a name of any length was stored and returned by every
    listing (the dashboard's poll included)."""
    assert task_spec("m:f", name="n" * MAX_NAME_CHARS).name == "n" * MAX_NAME_CHARS
    with pytest.raises(BadRequest, match="name"):
        task_spec("m:f", name="n" * (MAX_NAME_CHARS + 1))
    with pytest.raises(BadRequest, match="name"):
        task_spec("m:f", name="n" * 100_000)
