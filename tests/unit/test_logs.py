"""JSON log lines (``--log-format json``): one object per record with the fields a log shipper
indexes, ``extra=`` fields kept, exceptions as text; unknown formats refused."""

from __future__ import annotations

import io
import json
import logging

import pytest

from multiswarm.logs import JsonFormatter, configure_logging


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "multiswarm.worker", logging.INFO, "w.py", 1, "task %s", ("t1",), None
    )
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_fields_and_extras() -> None:
    line = JsonFormatter().format(_record(task="t1", run_ms=12, where=object()))
    doc = json.loads(line)
    assert "\n" not in line
    assert doc["level"] == "INFO" and doc["logger"] == "multiswarm.worker"
    assert doc["message"] == "task t1" and doc["pid"] > 0
    assert doc["ts"].endswith("+00:00") and "T" in doc["ts"]
    assert doc["task"] == "t1" and doc["run_ms"] == 12 and doc["where"].startswith("<object")
    assert "args" not in doc and "msg" not in doc  # LogRecord internals stay out


def test_exception_is_one_field() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, "x.py", 1, "failed", None, sys.exc_info())
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "failed" and "RuntimeError: boom" in doc["exc"]


def test_configure_logging_switches_format(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = []  # a fresh process: nothing configured yet
    try:
        configure_logging(logging.INFO, "json")
        logging.getLogger("multiswarm.t").info("hello", extra={"swarm": "s"})
        configure_logging(logging.INFO, "text")  # again: the same handler, another format
        logging.getLogger("multiswarm.t").info("plain")
        assert len(root.handlers) == 1
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = stream.getvalue().splitlines()
    assert json.loads(first)["swarm"] == "s"
    assert second.endswith("multiswarm.t INFO plain")


def test_a_root_configured_elsewhere_is_left_alone() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    other = logging.NullHandler()
    root.handlers[:] = [other]
    try:
        configure_logging(logging.DEBUG, "json")
        assert root.handlers == [other] and other.formatter is None
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    with pytest.raises(ValueError, match="not one of text, json"):
        configure_logging(logging.INFO, "xml")
