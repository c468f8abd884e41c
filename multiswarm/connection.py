"""Redis clients from settings, and retry of connection errors (tenacity).

Only connection-level failures are retried (``ConnectionError``, ``TimeoutError``): they are what a
Redis restart or fail-over looks like. A script's refusal is an answer, never retried. After the
reconnect window the error surfaces as :class:`~multiswarm.errors.RedisUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
import tenacity
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from multiswarm.config import Settings
from multiswarm.errors import ConfigError, RedisUnavailable
from multiswarm.urls import parse_sentinel, redact, tls_verification_off

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Errors that mean "Redis is (momentarily) unreachable", as opposed to a refused command.
CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    ConnectionResetError,
    OSError,
)

Client = aioredis.Redis


def connect(settings: Settings, **kwargs: Any) -> Client:
    """A redis-py asyncio client for ``settings.redis_url`` (hiredis parser when installed).

    Sentinel URLs (``redis+sentinel://h1:26379,h2:26379/mymaster/0``) return the master client of
    the named service; cluster URLs (``redis+cluster://h:p``) a ``RedisCluster`` (same command
    surface; every multiswarm script stays in one slot). A user name and password in any form
    (``redis://user:password@h``, ``redis+sentinel://user:password@h:p/master``,
    ``redis+cluster://user:password@h:p``) authenticate as that ACL user.

    ``rediss://`` is TLS with the server's certificate and host name verified against the
    system's CAs, or against the CA file named in the URL: ``rediss://h:6380/0?ssl_ca_certs=
    /etc/multiswarm/ca.pem`` (``ssl_certfile``/``ssl_keyfile`` add a client certificate).
    ``ssl_cert_reqs=none`` turns verification off; a warning is logged.

    Raises
    ------
    ConfigError
        The URL cannot be parsed (the message shows it with the password redacted).
    """
    url = settings.redis_url
    # Explicit timeouts: without a socket timeout a stalled server hangs a call forever; with
    # one, the call fails, is retried with its request id and acts once (scripts.py).
    kwargs.setdefault("socket_timeout", settings.socket_timeout_ms / 1000)
    kwargs.setdefault("socket_connect_timeout", settings.connect_timeout_ms / 1000)
    kwargs.setdefault("health_check_interval", 15)
    if tls_verification_off(url):
        log.warning("TLS certificate verification is off for %s", redact(url))
    try:
        if url.startswith("redis+sentinel://"):
            target = parse_sentinel(url)
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                target.sentinels, username=target.username, password=target.password
            )
            master: Client = sentinel.master_for(target.service, db=target.db, **kwargs)
            return master
        if url.startswith("redis+cluster://"):
            cluster: Any = RedisCluster.from_url(
                "redis://" + url.split("://", 1)[1],
                socket_timeout=kwargs["socket_timeout"],
                socket_connect_timeout=kwargs["socket_connect_timeout"],
            )
            return cluster  # type: ignore[no-any-return]
        return aioredis.from_url(url, **kwargs)
    except (ValueError, IndexError) as e:
        # not chained: redis-py's message may quote the URL, password included
        detail = str(e).replace(url, redact(url))
        raise ConfigError(f"cannot parse Redis URL {redact(url)!r}: {detail}") from None


def cancel_requested() -> bool:
    """True when the current task is being cancelled.

    redis-py can surface a cancellation that lands mid-read as a ``ConnectionError``; a reconnect
    loop that catches it must re-raise instead of reconnecting, or the task never ends.
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return bool(task is not None and cancelling is not None and cancelling())


def _retryable(e: BaseException) -> bool:
    return isinstance(e, CONNECTION_ERRORS) and not cancel_requested()


def retrying(timeout_s: float) -> tenacity.AsyncRetrying:
    """Exponential backoff with jitter (50 ms doubling to 2 s) for up to ``timeout_s``."""
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_retryable),
        wait=tenacity.wait_exponential(multiplier=0.05, max=2.0) + tenacity.wait_random(0, 0.05),
        stop=tenacity.stop_after_delay(timeout_s),
        reraise=True,
    )


async def with_retry(fn: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    """Run ``fn``, retrying connection errors; RedisUnavailable when the window closes."""
    try:
        async for attempt in retrying(timeout_s):
            with attempt:
                return await fn()
    except CONNECTION_ERRORS as e:
        if cancel_requested():
            raise asyncio.CancelledError() from e
        raise RedisUnavailable(f"Redis unreachable for {timeout_s:.0f} s: {e}") from e
    raise AssertionError("unreachable")  # pragma: no cover


async def ping(url: str, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url`` within ``timeout_s``."""
    client = aioredis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(await client.ping())
    except (*CONNECTION_ERRORS, redis.exceptions.RedisError):
        return False
    finally:
        await client.aclose()
