"""What every CLI module shares: the global options, one facade call per command with typed
errors turned into one-line messages, and the ``--json`` / text switch.

The global options (``--redis-url``, ``--namespace``, ``--json``) are defined once, in
:func:`global_options`, and given to the root and to every subcommand, so they are accepted
before and after the subcommand (``multiswarm-cli --json tasks list`` and ``multiswarm-cli tasks
list --json``); the value given last wins. Kept apart from ``cli.py`` so the command modules
never import it (it imports them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import click
import msgspec

from multiswarm import BadRequest, InvalidArgumentError, InvalidIdError, Multiswarm, MultiswarmError
from multiswarm.config import Settings, from_env

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Errors that mean the command was given bad input: exit 2, like a click usage error.
USAGE_ERRORS = (BadRequest, InvalidArgumentError, InvalidIdError)
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


def global_options(root: bool = False) -> list[click.Option]:
    """``--redis-url``, ``--namespace`` and ``--json``: full help on the root, short elsewhere."""
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


def settings_of(ctx: click.Context) -> Settings:
    """Settings from the global options and the environment, built once per invocation."""
    cached: Settings | None = ctx.meta.get("multiswarm.settings")
    if cached is None:
        try:
            cached = from_env(
                redis_url=ctx.meta.get("multiswarm.redis_url"),
                namespace=ctx.meta.get("multiswarm.namespace"),
            )
        except MultiswarmError as e:
            raise click.ClickException(str(e)) from e
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
        MultiswarmError.
    """
    settings = settings_of(ctx).replace(reconnect_timeout_s=CLI_RECONNECT_S)

    async def main() -> T:
        async with await Multiswarm.connect(settings=settings, actor=ACTOR) as ms:
            return await fn(ms)

    try:
        return asyncio.run(main())
    except USAGE_ERRORS as e:
        raise usage_failure(f"{type(e).__name__}: {e}") from e
    except MultiswarmError as e:
        raise click.ClickException(f"{type(e).__name__}: {e}") from e
    except ValueError as e:  # a component's check of an argument (e.g. a scale target)
        raise usage_failure(str(e)) from e


def emit(ctx: click.Context, data: Any, text: Callable[[], None] | str) -> None:
    """Print ``data`` (Structs, dicts, lists) as JSON with ``--json``; else print ``text`` (a
    line, or a function that prints)."""
    if as_json(ctx):
        builtins = msgspec.to_builtins(data)
        click.echo(json.dumps(builtins, indent=2, sort_keys=True, default=str))
    elif isinstance(text, str):
        click.echo(text)
    else:
        text()


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> None:
    """A rich table; the first column names the row and is never cut."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title or None)
    for i, column in enumerate(columns):
        t.add_column(column, no_wrap=i == 0)
    for r in rows:
        t.add_row(*(str(v) for v in r))
    Console().print(t)


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
