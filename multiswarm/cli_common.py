"""What every CLI module shares: the global options, one facade call per command with typed
errors turned into one-line messages, and the ``--json`` / text switch.

The global options (``--redis-url``, ``--namespace``, ``--json``, ``--log-format``) are
defined once, in
:func:`global_options`, and given to the root and to every subcommand, so they are accepted
before and after the subcommand (``multiswarm-cli --json tasks list`` and ``multiswarm-cli tasks
list --json``); the value given last wins. Kept apart from ``cli.py`` so the command modules
never import it (it imports them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec

from multiswarm import (
    BadRequest,
    ConfigError,
    InvalidArgumentError,
    InvalidIdError,
    MultiswarmError,
    ScriptError,
    UnknownDependency,
)
from multiswarm.config import Settings, from_env
from multiswarm.logs import LOG_FORMATS
from multiswarm.logs import configure_logging as configure_log_output

if TYPE_CHECKING:  # rich is imported when something is printed: startup stays quick
    # and the facade when a command calls it: `run worker` does without it
    from rich.console import Console, RenderableType

    from multiswarm.api import Multiswarm

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Errors that mean the command was given bad input: exit 2, like a click usage error.
USAGE_ERRORS = (BadRequest, ConfigError, InvalidArgumentError, InvalidIdError, UnknownDependency)
#: How long a command retries an unreachable Redis before giving up, in seconds.
CLI_RECONNECT_S = 5.0
#: Who the CLI acts as in recovery logs.
ACTOR = "operator"


def usage_failure(message: str) -> click.ClickException:
    """Bad input found after parsing: one line on stderr, exit 2 (click's usage errors print
    the usage too)."""
    error = click.ClickException(message)
    error.exit_code = 2
    return error


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # ctx.meta is one dict shared by the root and every subcommand context
    if value is not None and value is not False and param.name:
        ctx.meta[f"multiswarm.{param.name}"] = value
    return value


def _log_format(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    ctx.meta["multiswarm.log_format"] = value
    level = ctx.meta.get("multiswarm.log_level")
    if level is not None:  # given after the subcommand: the root configured logging already
        configure_log_output(level, value)
    return value


def global_options(root: bool = False) -> list[click.Option]:
    """``--redis-url``, ``--namespace``, ``--json`` and ``--log-format``: full help on the
    root, short elsewhere."""
    more = " [see multiswarm-cli --help]"
    url_help = (
        "redis://, rediss://, unix://, redis+sentinel://, redis+cluster:// "
        "[default: $MULTISWARM_REDIS_URL, else $REDIS_HOST..., else localhost:6379]. "
        "A password given here shows in `ps`: put it in $MULTISWARM_REDIS_URL."
    )
    shared: dict[str, Any] = {"expose_value": False, "callback": _remember, "is_eager": True}
    return [
        click.Option(
            ["--redis-url"], metavar="URL", help=url_help if root else "Redis URL" + more, **shared
        ),
        click.Option(
            ["--namespace"],
            help="Key prefix and hash tag of the deployment [default: $MULTISWARM_NAMESPACE, "
            "else swarm]",
            **shared,
        ),
        click.Option(["--json"], is_flag=True, help="Print JSON instead of text.", **shared),
        click.Option(
            ["--log-format"],
            type=click.Choice(LOG_FORMATS),
            expose_value=False,
            callback=_log_format,
            is_eager=True,
            help="Log lines as text, or as JSON objects (ts, level, logger, message, pid, "
            "extras); processes started by up and demo inherit it [default: "
            "$MULTISWARM_LOG_FORMAT, else text]"
            if root
            else "text or json" + more,
        ),
    ]


def add_global_options(command: click.Command) -> None:
    """Give ``command`` and every subcommand under it the global options (once)."""
    names = {p.name for p in command.params}
    command.params += [o for o in global_options() if o.name not in names]
    for sub in getattr(command, "commands", {}).values():
        add_global_options(sub)


def option(name: str, default: Any, help: str = "", **kw: Any) -> Callable[[F], F]:
    """``click.option(name)`` showing its default in ``--help``; the type follows the default
    unless ``type`` is given."""
    return click.option(name, default=default, show_default=True, help=help, **kw)


def configure_logging(ctx: click.Context, verbose: int) -> None:
    """The root's logging: WARNING, INFO with ``-v``, DEBUG with ``-vv``; text or JSON lines
    (``--log-format``, else ``$MULTISWARM_LOG_FORMAT``). A ``--log-format`` given after the
    subcommand configures it again when it is parsed."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    ctx.meta["multiswarm.log_level"] = level
    fmt = ctx.meta.get("multiswarm.log_format") or os.environ.get("MULTISWARM_LOG_FORMAT") or "text"
    try:
        configure_log_output(level, fmt)
    except ValueError as e:
        raise usage_failure(f"MULTISWARM_LOG_FORMAT: {e}") from e


def settings_of(ctx: click.Context) -> Settings:
    """Settings from the global options and the environment, built once per invocation."""
    cached: Settings | None = ctx.meta.get("multiswarm.settings")
    if cached is None:
        try:
            cached = from_env(
                redis_url=ctx.meta.get("multiswarm.redis_url"),
                namespace=ctx.meta.get("multiswarm.namespace"),
                log_format=ctx.meta.get("multiswarm.log_format"),
            )
        except MultiswarmError as e:  # a malformed URL or variable: bad input
            raise usage_failure(describe(e)) from e
        ctx.meta["multiswarm.settings"] = cached
    return cached


def as_json(ctx: click.Context) -> bool:
    return bool(ctx.meta.get("multiswarm.json"))


def call(ctx: click.Context, fn: Callable[[Multiswarm], Awaitable[T]]) -> T:
    """Run ``fn(ms)`` on a facade connected for this command, then close it.

    Raises
    ------
    click.ClickException
        One line: exit 2 for bad input (:data:`USAGE_ERRORS`, a ValueError), 1 for any other
        MultiswarmError and for an error reply of Redis that reached the command (a command the
        ACL user may not run, a key of the wrong type).
    """
    from redis.exceptions import RedisError

    from multiswarm.api import Multiswarm

    settings = settings_of(ctx).replace(reconnect_timeout_s=CLI_RECONNECT_S)

    async def main() -> T:
        async with await Multiswarm.connect(settings=settings, actor=ACTOR) as ms:
            return await fn(ms)

    try:
        return asyncio.run(main())
    except MultiswarmError as e:
        raise failure(e) from e
    except ValueError as e:  # a component's check of an argument (e.g. a scale target)
        raise usage_failure(str(e)) from e
    except RedisError as e:  # NOPERM, WRONGTYPE...: what Redis said, on one line
        raise click.ClickException(f"Redis: {' '.join(str(e).split()) or type(e).__name__}") from e


def failure(e: MultiswarmError) -> click.ClickException:
    """``e`` as one line for the CLI to exit with: 2 for bad input (:data:`USAGE_ERRORS`), 1
    for anything else."""
    if isinstance(e, USAGE_ERRORS):
        return usage_failure(describe(e))
    return click.ClickException(describe(e))


def describe(e: MultiswarmError) -> str:
    """One line for an operator: a script's refusal as ``not found: task t1`` (its code in
    words, then the detail), anything else as its message, whitespace folded."""
    if isinstance(e, ScriptError):
        text = e.code.lower().replace("_", " ") + (f": {e.detail}" if e.detail else "")
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def dumps(data: Any, indent: int | None = None) -> str:
    """``data`` (Structs, dicts, lists) as strict JSON, keys sorted: a NaN or an infinity (a
    handler's float result) as ``null``, as the HTTP API writes it, since ``NaN`` is not JSON
    and strict parsers refuse the document. msgspec's encoder, as the HTTP API's (it writes
    those as null); ``indent`` None is one line, spaced as ``json.dumps`` spaces it."""
    encoded = msgspec.json.encode(data, enc_hook=str, order="sorted")
    return msgspec.json.format(encoded, indent=indent or 0).decode()


def loads(text: str) -> Any:
    """``text`` as strict JSON, as the HTTP API reads it: ``NaN``, ``Infinity`` and numbers
    beyond a float's range are refused (Python's json module accepts them).

    Raises
    ------
    ValueError
        Not JSON (``json.JSONDecodeError``; :class:`InvalidArgumentError` for those numbers).
    """
    return json.loads(text, parse_constant=_not_json, parse_float=_finite_float)


def _not_json(constant: str) -> Any:
    raise InvalidArgumentError(f"{constant} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{text} is beyond the range of a JSON number")
    return value


def emit(ctx: click.Context, data: Any, text: Callable[[], None] | str) -> None:
    """Print ``data`` (Structs, dicts, lists) as JSON with ``--json``; else print ``text`` (a
    line, or a function that prints)."""
    if as_json(ctx):
        click.echo(dumps(data, indent=2))
    elif isinstance(text, str):
        click.echo(text)
    else:
        text()


#: Width of the text output when it is not a terminal (a pipe, a file): wide enough that no
#: table is cut, ids above all (rich would assume 80 columns).
PIPE_WIDTH = 1000


def console() -> Console:
    """A rich console on stdout: the terminal's width, or :data:`PIPE_WIDTH` when piped."""
    from rich.console import Console

    out = click.get_text_stream("stdout")
    return Console(file=out, width=None if out.isatty() else PIPE_WIDTH, highlight=False)


def make_table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], title: str = ""
) -> RenderableType:
    """A rich table; the first column names the row and is never cut (ids). Every cell is
    plain text, never rich markup: a reason or label such as ``[gpu]`` or ``[/x]`` prints as
    written (read as markup, the first vanished and the second crashed the command)."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(title) if title else None)
    for i, column in enumerate(columns):
        t.add_column(Text(column), no_wrap=i == 0, overflow="fold")
    for r in rows:
        t.add_row(*(Text(str(v)) for v in r))
    return t


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> None:
    """Print :func:`make_table`."""
    console().print(make_table(columns, rows, title))


def show(parts: Sequence[RenderableType | str]) -> None:
    """Print lines (as plain text: no rich markup) and tables."""
    from rich.text import Text

    out = console()
    for p in parts:
        out.print(Text(p) if isinstance(p, str) else p)


Render = Callable[["Multiswarm"], Awaitable[tuple[Any, Sequence["RenderableType | str"]]]]


def report(ctx: click.Context, render: Render, watch_s: float | None = None) -> None:
    """Print what ``render`` returns (data for ``--json``, parts for text) once; or, with
    ``watch_s``, again every ``watch_s`` seconds until Ctrl-C or SIGTERM, which exit 0.

    Watching redraws the text in place (rich ``Live``); with ``--json`` it prints one compact
    JSON document per refresh (JSON lines), for ``jq`` and log shippers.
    """
    if watch_s is None:
        data, parts = call(ctx, render)
        emit(ctx, data, lambda: show(parts))
        return
    call(ctx, lambda ms: _watch(ctx, ms, render, watch_s))


async def _watch(ctx: click.Context, ms: Multiswarm, render: Render, every_s: float) -> None:
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    live: Live | None = None
    try:
        while not stop.is_set():
            data, parts = await render(ms)
            if as_json(ctx):
                click.echo(dumps(data))
            else:
                view = Group(*(Text(p) if isinstance(p, str) else p for p in parts))
                out = console()
                if not out.is_terminal:  # nothing to redraw in place: one view after another
                    out.print(view)
                    out.file.flush()
                elif live is None:
                    live = Live(view, console=out, auto_refresh=False)
                    live.start()
                if live is not None:
                    live.update(view, refresh=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    finally:
        if live is not None:
            live.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def watch_option(f: F) -> F:
    """``--watch SECONDS``: refresh until Ctrl-C (see :func:`report`)."""
    return click.option(
        "--watch",
        "watch_s",
        type=click.FloatRange(min=0.1),
        default=None,
        is_flag=False,
        flag_value=2.0,
        metavar="[SECONDS]",
        help="Refresh every SECONDS (2 when not given) until Ctrl-C; with --json one JSON "
        "document per line per refresh.",
    )(f)


def ago(ms: int | None) -> str:
    """``12 s ago`` / ``5 min ago`` / ``2.5 h ago`` for an epoch time in ms; ``-`` for none."""
    if not ms or ms <= 0:
        return "-"
    s = max(0.0, time.time() - ms / 1000)
    return (
        f"{s:.0f} s ago"
        if s < 120
        else f"{s / 60:.0f} min ago"
        if s < 7200
        else f"{s / 3600:.1f} h ago"
    )


def seconds(ms: int | None) -> str:
    """``1.5 s`` for a duration in ms; empty for none or zero."""
    return f"{ms / 1000:.1f} s" if ms else ""
