"""``multiswarm-cli run api``: the operations surface (JSON API, ``/metrics``, dashboard) as one
process role, registered on the ``run`` group by :mod:`multiswarm.cli`."""

from __future__ import annotations

import click

from multiswarm import MultiswarmError
from multiswarm import node_api as node
from multiswarm.cli_common import failure, option, settings_of


@click.command("api")
@option(
    "--host",
    "127.0.0.1",
    "Address to listen on; anything but loopback needs $MULTISWARM_API_TOKEN.",
    envvar="MULTISWARM_API_HOST",
)
@option(
    "--port",
    node.DEFAULT_API_PORT,
    "TCP port (0: any free port; the URL printed at start names it).",
    type=click.IntRange(0, 65535),
    envvar="MULTISWARM_API_PORT",
)
@click.option(
    "--open-scrape",
    is_flag=True,
    help="Serve /metrics and /healthz without a token (for Prometheus and probes).",
)
@option(
    "--forwarded-allow-ips",
    "127.0.0.1",
    "Proxies whose X-Forwarded-Proto/-For are believed (comma-separated addresses, or *): name "
    "the TLS proxy in front, so the dashboard's cookie is marked Secure.",
    envvar="FORWARDED_ALLOW_IPS",
)
@click.pass_context
def run_api_cmd(
    ctx: click.Context, host: str, port: int, open_scrape: bool, forwarded_allow_ips: str
) -> None:
    """HTTP API, Prometheus /metrics and the live dashboard at /.

    \b
    Tokens (environment only, so they never show in `ps`):
      MULTISWARM_API_TOKEN        admin: every route
      MULTISWARM_API_READ_TOKEN   read-only: GET routes
    With neither set the API is open and listens on loopback only.
    """
    try:
        node.serve_api(
            settings_of(ctx),
            host,
            port,
            open_scrape,
            echo=click.echo,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    except MultiswarmError as e:
        raise failure(e) from e
