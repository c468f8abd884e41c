"""``multiswarm-cli run api``: the operations surface (JSON API, ``/metrics``, dashboard) as one
process role, registered on the ``run`` group by :mod:`multiswarm.cli`."""

from __future__ import annotations

import click

from multiswarm.cli_common import settings_of
from multiswarm.errors import MultiswarmError
from multiswarm.http.auth import tokens_from_env
from multiswarm.http.server import DEFAULT_PORT, serve_api


@click.command("api")
@click.option(
    "--host",
    envvar="MULTISWARM_API_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback needs $MULTISWARM_API_TOKEN.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    envvar="MULTISWARM_API_PORT",
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port (0: any free port; the URL printed at start names it).",
)
@click.option(
    "--open-scrape",
    is_flag=True,
    help="Serve /metrics and /healthz without a token (for Prometheus and probes).",
)
@click.pass_context
def run_api_cmd(ctx: click.Context, host: str, port: int, open_scrape: bool) -> None:
    """HTTP API, Prometheus /metrics and the live dashboard at /.

    \b
    Tokens (environment only, so they never show in `ps`):
      MULTISWARM_API_TOKEN        admin: every route
      MULTISWARM_API_READ_TOKEN   read-only: GET routes
    With neither set the API is open and listens on loopback only.
    """
    try:
        tokens = tokens_from_env(open_scrape=open_scrape)
        serve_api(settings_of(ctx), host, port, tokens, echo=click.echo)
    except MultiswarmError as e:
        raise click.ClickException(f"{type(e).__name__}: {e}") from e
