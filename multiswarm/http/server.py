"""Run the operations app under uvicorn until SIGTERM/SIGINT (``multiswarm-cli run api``).

The listening socket is bound here, before uvicorn starts, so the URL printed at start carries
the real port (``--port 0`` picks a free one: tests and several replicas on one host use it)
and a refused bind fails before anything else happens.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

import uvicorn

from multiswarm.api import Multiswarm
from multiswarm.config import Settings
from multiswarm.errors import ConfigError
from multiswarm.http.app import create_app
from multiswarm.http.auth import Tokens, check_bind
from multiswarm.http.config import API_RECONNECT_S


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` has a colon).

    Raises
    ------
    ConfigError
        The address is in use or not local.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port/`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve_api(
    settings: Settings,
    host: str,
    port: int,
    tokens: Tokens,
    echo: Callable[[str], None],
    *,
    forwarded_allow_ips: str = "127.0.0.1",
) -> None:
    """Connect the facade, bind, print the URL and the auth mode, serve until a signal.
    ``forwarded_allow_ips``: the proxies whose ``X-Forwarded-Proto`` and ``-For`` are believed
    (uvicorn's ``forwarded_allow_ips``), so behind a TLS proxy the request's scheme is https and
    the dashboard's cookie is marked Secure.

    Raises
    ------
    ConfigError
        No token configured and ``host`` is not loopback, or the port cannot be bound.
    RedisUnavailable
        Redis does not answer at start.
    """
    auth_line = check_bind(host, tokens)

    async def main() -> None:
        budget = min(settings.reconnect_timeout_s, API_RECONNECT_S)
        ms = await Multiswarm.connect(
            settings=settings.replace(reconnect_timeout_s=budget),
            actor=f"api@{socket.gethostname()}-{os.getpid()}",  # who applied a recovery
        )
        sock = bind(host, port)
        try:
            config = uvicorn.Config(
                create_app(ms, tokens),
                log_level="warning",
                # uvicorn's own handlers would print text whatever --log-format says: its
                # records go to the root logger the CLI configured instead
                log_config=None,
                access_log=False,
                lifespan="off",
                # an idle keep-alive connection is closed after 5 s; this does not bound a
                # request being received: a body must arrive within replies.BODY_TIMEOUT_S (else
                # 408), but nothing here bounds slow headers (slowloris): facing untrusted
                # clients, put a proxy that buffers requests in front
                timeout_keep_alive=5,
                proxy_headers=True,
                forwarded_allow_ips=forwarded_allow_ips,
            )
            server = uvicorn.Server(config)
            echo(f"multiswarm api: {url_of(sock)} ({auth_line})")
            await server.serve(sockets=[sock])
        finally:
            sock.close()
            await ms.close()

    asyncio.run(main())
