"""Process logging: plain text lines or JSON lines (``--log-format``, ``MULTISWARM_LOG_FORMAT``).

JSON lines carry ``ts`` (UTC, ISO 8601 with ms), ``level``, ``logger``, ``message``, ``pid``,
every ``extra=`` field given to the log call, and ``exc`` when an exception is logged, so a log
shipper (Loki, Elasticsearch, CloudWatch) can index them without parsing. A formatter of the
standard library, not a dependency: the whole of it is the :meth:`JsonFormatter.format` below.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from multiswarm.errors import ConfigError

#: ``--log-format`` choices.
LOG_FORMATS: tuple[str, ...] = ("text", "json")
#: The text format every role used so far.
TEXT_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


#: Attribute marking the handler :func:`configure_logging` installed.
_MARK = "_multiswarm_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: int, log_format: str = "text") -> None:
    """Send the root logger's records at ``level`` and above to stderr as ``log_format``
    (``text`` or ``json``).

    Like :func:`logging.basicConfig` it leaves a root logger configured by someone else alone
    (an application embedding multiswarm, pytest's capture); called again, it changes the
    format of the handler it installed (``--log-format`` given after the subcommand).

    Raises
    ------
    ConfigError
        ``log_format`` is not one of :data:`LOG_FORMATS`.
    """
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _MARK, False)]
    if not ours and root.handlers:
        return
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _MARK, True)
        root.addHandler(handler)
        ours = [handler]
    for h in ours:
        h.setFormatter(formatter)
    root.setLevel(level)
