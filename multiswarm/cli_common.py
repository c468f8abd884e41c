"""Helpers shared by every CLI module: settings from the context, one-shot async calls with
typed errors turned into messages, and the ``--json`` / table switch.

Kept apart from ``cli.py`` so the command modules (``cli_recover``, ``cli_messages``,
``cli_ops``) never import ``cli.py``, which imports them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.errors import MultiswarmError
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts

T = TypeVar("T")


def settings_of(ctx: click.Context) -> Settings:
    """The settings the root command built from ``--redis-url``/``--namespace``/environment."""
    s: Settings = ctx.find_root().obj["settings"]
    return s


def run_async(ctx: click.Context, fn: Callable[[Scripts, Keys], Awaitable[T]]) -> T:
    """Run ``fn(scripts, keys)`` on a fresh client; a MultiswarmError becomes a CLI error."""
    settings = settings_of(ctx)

    async def main() -> T:
        client = connect(settings)
        try:
            return await fn(Scripts(client, reconnect_timeout_s=5.0), Keys(settings.namespace))
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except MultiswarmError as e:
        raise click.ClickException(f"{type(e).__name__}: {e}") from e


def emit(data: Any, as_json: bool, table: Callable[[], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else call ``table``."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        table()
