"""Redis clients from settings, and retry of connection errors (tenacity).

Only outages are retried: connection-level failures (a Redis restart or fail-over) and ``BUSY``
(a server stalled by a long script); a refusal is an answer, never retried. After the reconnect
window the error surfaces as :class:`~multiswarm.errors.RedisUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
import tenacity
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import SlotNotCoveredError

from multiswarm.config import Settings
from multiswarm.errors import ConfigError, MultiswarmError, RedisUnavailable
from multiswarm.urls import parse_cluster, parse_sentinel, redact, tls_verification_off

T = TypeVar("T")
log = logging.getLogger(__name__)

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    _pack = None

#: Errors that mean "Redis is (momentarily) unreachable", as opposed to a refused command.
CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    ConnectionResetError,
    OSError,
)

#: What a cluster answers while a slot has no reachable master (a failover under way): an
#: outage too, once redis-py's own few retries (~0.75 s) ran out.
CLUSTER_FAILOVER = (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)
#: What the loops that outlast outages catch (subscriptions, wake-ups, best-effort sends): a
#: ``ResponseError`` only to look whether it is one (:func:`outage` tells; others re-raised).
OUTAGE_CAUGHT = (*CONNECTION_ERRORS, redis.exceptions.ResponseError, SlotNotCoveredError)
#: What :func:`with_retry` catches, for the same look.
_CAUGHT = (*OUTAGE_CAUGHT, AttributeError)

Client = aioredis.Redis


class SentinelMaster(aioredis.Redis):
    """The master client of a Sentinel service: closing it also closes its connections to the
    Sentinels, which the master's own pool does not own."""

    # not `sentinel`: Redis has a SENTINEL command method of that name
    watched_by: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.watched_by is not None:
            for s in self.watched_by.sentinels:
                await s.aclose()


def connect(settings: Settings, **kwargs: Any) -> Client:
    """A redis-py asyncio client for ``settings.redis_url`` (hiredis parser when installed).

    Sentinel URLs (``redis+sentinel://h1:26379,h2:26379/mymaster/0``) return the master client of
    the named service; cluster URLs (``redis+cluster://h1:p1[,h2:p2...]``: several seed nodes,
    so a client starts while one is down) a ``RedisCluster`` with the same timeouts and health
    checks (same command surface; every multiswarm script stays in one slot). A user name and password in any form
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
            master: SentinelMaster = sentinel.master_for(
                target.service, redis_class=SentinelMaster, db=target.db, **kwargs
            )
            master.watched_by = sentinel
            return master
        if url.startswith("redis+cluster://"):
            seeds = parse_cluster(url)
            cluster: Any = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in seeds.nodes],
                username=seeds.username,
                password=seeds.password,
                **kwargs,
            )
            return cluster  # type: ignore[no-any-return]
        return aioredis.from_url(url, **kwargs)
    except (ValueError, IndexError) as e:
        # not chained: redis-py's message may quote the URL, password included
        detail = str(e).replace(url, redact(url))
        raise ConfigError(f"cannot parse Redis URL {redact(url)!r}: {detail}") from None


def is_cluster(client: Any) -> bool:
    """True for a Redis Cluster client (its channels are sharded: multiswarm.feed)."""
    return isinstance(client, RedisCluster)


async def server_time_ms(client: Client) -> int:
    """Redis's clock (``TIME``) in ms; on a cluster, the default node's (TIME names no key)."""
    cluster: Any = client
    on = {"target_nodes": RedisCluster.DEFAULT_NODE} if is_cluster(client) else {}
    seconds, micros = await cluster.time(**on)
    return int(seconds) * 1000 + int(micros) // 1000


def cancel_requested() -> bool:
    """True when the current task is being cancelled: redis-py can surface a cancellation that
    lands mid-read as a ``ConnectionError``, which a reconnect loop must then re-raise."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return bool(task is not None and cancelling is not None and cancelling())


def dropped_writer(e: BaseException) -> bool:
    """True for redis-py's asyncio cluster race: after one command's connection error it
    disconnects the failed node's connections while other commands are writing on them, whose
    write then fails with ``AttributeError`` (the writer is gone). That is the same outage seen
    from another command, so it is retried like one (found killing a cluster master mid-demo).
    """
    if not isinstance(e, AttributeError):
        return False
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(
        os.path.join("redis", "asyncio", "connection.py")
    )


def socket_timeout_s(client: Any) -> float:
    """The socket timeout of ``client``'s connections, in seconds (5 s, multiswarm's default,
    when unset); a cluster client has no pool: its nodes take its own connection kwargs."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or getattr(client, "connection_kwargs", {})
    return float(kwargs.get("socket_timeout") or 5.0)


def server_busy(e: BaseException) -> bool:
    """True for a ``BUSY`` reply: another client's script (or function) has run past
    ``busy-reply-threshold`` (5 s by default) and the server answers every other command so
    until it ends or is killed. The command was not run, so running it again is safe: a stall,
    retried like an outage (redis-py raises a plain ``ResponseError`` for it; ``BUSYGROUP``, a
    consumer group that exists, is an answer)."""
    return isinstance(e, redis.exceptions.ResponseError) and str(e).startswith("BUSY ")


def outage(e: BaseException) -> bool:
    """Whether ``e`` says Redis cannot serve now (a connection error, ``BUSY``, a cluster
    failing over), not an answer."""
    failing = (*CONNECTION_ERRORS, *CLUSTER_FAILOVER, SlotNotCoveredError)
    return isinstance(e, failing) or server_busy(e)


def _retryable(e: BaseException) -> bool:
    # a refused password is an answer, not an outage: retrying it only delays the error
    return (
        (outage(e) or dropped_writer(e))
        and not isinstance(e, redis.exceptions.AuthenticationError)
        and not cancel_requested()
    )


def short(e: BaseException) -> str:
    """One line describing a redis-py connection error, without the client repr some carry.

    ``MasterNotFoundError`` quotes the whole Sentinel pool (1.5 KB) after `` : ``; the part
    before it names the service, which is what an operator needs.
    """
    if isinstance(e, MasterNotFoundError):
        return str(e).split(" : ", 1)[0]
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _log_retry(state: tenacity.RetryCallState) -> None:
    # From the first failure, once per backoff step: an outage is visible at once in the log,
    # and its length can be read off the timestamps.
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "Redis unreachable (attempt %d, %.1f s so far): %s; retrying in %.2f s",
        state.attempt_number,
        state.seconds_since_start or 0.0,
        short(exc) if exc else "?",
        wait,
    )


def retrying(timeout_s: float) -> tenacity.AsyncRetrying:
    """Exponential backoff with jitter (50 ms doubling to 2 s) for up to ``timeout_s``.

    Each failed attempt is logged at WARNING before its backoff sleep.
    """
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_retryable),
        wait=tenacity.wait_exponential(multiplier=0.05, max=2.0) + tenacity.wait_random(0, 0.05),
        stop=tenacity.stop_after_delay(timeout_s),
        before_sleep=_log_retry,
        reraise=True,
    )


async def refresh_topology(client: Any) -> None:
    """Re-read a cluster client's slot map and move its command parser to a live node (no-op
    for other clients; a refresh that fails now is left to the next retry).

    Why (redis-py 8.1.0, ``redis.asyncio.cluster``): ``FCALL`` has movable keys, so
    ``RedisCluster.execute_command`` first asks the commands parser's node (the default node)
    ``COMMAND GETKEYS``, *before* its retry loop. When that node is a killed master, the
    connection error is raised there, outside ``_execute_command``'s handler that sets
    ``_initialize = True``: the client never re-reads the slot map and asks the dead node
    again on every retry, for good (seen killing the master owning ``{ns}`` mid-demo, which is
    also the default node). ``initialize()`` is the only way redis-py offers to refresh both
    the slot map and the parser's node, and it acts only with ``_initialize`` set.
    """
    if not is_cluster(client):
        return
    client._initialize = True
    with contextlib.suppress(*CONNECTION_ERRORS, redis.exceptions.RedisClusterException):
        await client.initialize()


def _not_retried(e: BaseException) -> None:
    """Raise what an error caught by :func:`with_retry` means when it is not an outage: refused
    credentials (ConfigError), an AttributeError that is not redis-py's dropped writer or a
    reply other than ``BUSY`` (as is), a cancellation redis-py reported as a lost connection."""
    if isinstance(e, redis.exceptions.AuthenticationError):
        raise ConfigError(f"Redis refused the credentials: {short(e)}") from e
    if isinstance(e, AttributeError) and not dropped_writer(e):
        raise e
    if isinstance(e, redis.exceptions.ResponseError) and not outage(e):
        raise e  # an answer (a script's refusal is translated by its caller)
    if cancel_requested():
        raise asyncio.CancelledError() from e


async def with_retry(
    fn: Callable[[], Awaitable[T]], timeout_s: float, client: Client | None = None
) -> T:
    """Run ``fn``, retrying connection errors; RedisUnavailable when the window closes.

    ``client``: the client ``fn`` uses; on a cluster its topology is re-read before each retry
    (:func:`refresh_topology`).
    """
    try:
        # no fault, the common case: one attempt without building the retry machinery (a
        # tenacity state per call was a measurable share of the hot path's client CPU)
        return await fn()
    except _CAUGHT as e:
        _not_retried(e)
        # the retry loop below logs its own attempts from 1 again, each before its backoff
        log.warning("Redis unreachable (attempt 1, 0.0 s so far): %s; retrying at once", short(e))
    failed = True
    try:
        async for attempt in retrying(timeout_s):
            with attempt:
                if failed and client is not None:
                    await refresh_topology(client)
                failed = True
                return await fn()
    except _CAUGHT as e:
        _not_retried(e)
        raise RedisUnavailable(f"Redis unreachable for {timeout_s:.0f} s: {short(e)}") from e
    raise AssertionError("unreachable")  # pragma: no cover


class DirectCalls:
    """Single commands sent on connections taken once from ``client``'s pool and kept: the
    hot path's script calls without ``execute_command``'s layers.

    redis-py 8.1's ``execute_command`` costs ~100 µs of client CPU per call beyond the round
    trip (pool lock and stale-data check per call, observability records, a Task per write
    for its socket timeout, the Python packer: ~60 µs for an FCALL of 50 arguments); this
    packs with hiredis (~7 µs) and writes and reads on a connection kept aside (decision 58).
    What stays: the handshake (``connect``: AUTH, SELECT, Sentinel's master lookup), the
    read's socket timeout, and the disconnect on a failed or interrupted read, so errors are
    redis-py's own (:data:`CONNECTION_ERRORS`, ``ResponseError``) and :func:`with_retry`
    handles them as before. Connections are the pool's (counted in use), so closing the
    client closes them. Clients other than a plain or Sentinel ``Redis`` (cluster) get None
    from :meth:`for_client` and keep ``execute_command``.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.idle: list[Any] = []

    @classmethod
    def for_client(cls, client: Any) -> DirectCalls | None:
        pool = getattr(client, "connection_pool", None)
        kind = getattr(pool, "connection_class", None)
        if (
            is_cluster(client)
            or not hasattr(pool, "get_available_connection")
            or not isinstance(kind, type)
            or not issubclass(kind, AbstractConnection)
            or not kind.__module__.startswith("redis.")  # e.g. fakeredis's own connection
        ):
            return None
        return cls(pool)

    async def call(self, *args: Any) -> Any:
        """Send one command, return its reply (a script's error reply raises
        ``ResponseError``)."""
        conn = self.idle.pop() if self.idle else self.pool.get_available_connection()
        try:
            await _send(conn, (args,))
            # on a timeout, a lost connection or a cancellation it disconnects
            return await conn.read_response()
        finally:
            self.idle.append(conn)

    async def call_many(self, *commands: tuple[Any, ...], raise_on_error: bool = True) -> list[Any]:
        """Send several commands in one write (each packed by hiredis) and return their raw
        replies in order, as a non-transactional pipeline would without its response
        callbacks. Every reply is read before the first error reply is raised
        (``ResponseError``; with ``raise_on_error`` False the errors come back in place), so
        the connection stays in step; a timeout, a lost connection or a cancellation
        disconnects it (``read_response``) and raises as :meth:`call` does. A blocking command
        (``XREAD BLOCK``) holds its connection alone: concurrent calls take others."""
        conn = self.idle.pop() if self.idle else self.pool.get_available_connection()
        try:
            await _send(conn, commands)
            replies: list[Any] = []
            error: redis.exceptions.ResponseError | None = None
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except redis.exceptions.ResponseError as e:
                    error = error or e
                    replies.append(e)
            if error is not None and raise_on_error:
                raise error
            return replies
        finally:
            self.idle.append(conn)


async def _send(conn: Any, commands: tuple[tuple[Any, ...], ...]) -> None:
    """Connect ``conn`` if it is not, and write ``commands`` in one write, each packed by
    hiredis (redis-py's packer without hiredis or for arguments hiredis refuses)."""
    if not conn.is_connected:
        await conn.connect()
    writer = getattr(conn, "_writer", None)
    if _pack is None or writer is None:  # another redis-py or no hiredis
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        return
    try:
        packed = b"".join([_pack(c) for c in commands])
    except TypeError:
        packed = b"".join(conn.pack_commands(commands))  # redis-py's DataError
    # small and the server reads at all times; a stalled one fails the read
    writer.write(packed)


def explain(e: Exception, url: str) -> MultiswarmError:
    """The typed, one-line error for a failure to reach or select the server at ``url``.

    Covers what a wrong URL looks like from redis-py: a database index the server lacks
    (``DB index is out of range``), a ``redis+cluster://`` URL at a server not in cluster mode,
    a Sentinel that knows no such master, refused credentials, and plain unreachability.
    """
    where = redact(url)
    text = short(e)
    if isinstance(e, MultiswarmError):
        return e
    if isinstance(e, redis.exceptions.ResponseError) and "DB index is out of range" in text:
        return ConfigError(
            f"{where}: the server has no such database (the default server has 0-15); "
            "use a smaller /db in the URL"
        )
    if isinstance(e, redis.exceptions.RedisClusterException):
        if "cluster mode is not enabled" in text.lower() or "cluster support disabled" in text:
            return ConfigError(
                f"{where} asks for a Redis Cluster, but the server is not in cluster mode: "
                "use redis:// for a single server"
            )
        return RedisUnavailable(f"Redis Cluster at {where} unreachable: {text}")
    if isinstance(e, redis.exceptions.AuthenticationError):
        return ConfigError(f"{where}: Redis refused the credentials ({text})")
    if isinstance(e, MasterNotFoundError):
        return RedisUnavailable(f"{where}: {text}; check the Sentinel addresses and service name")
    if isinstance(e, CONNECTION_ERRORS):
        return RedisUnavailable(f"Redis at {where} unreachable: {text}")
    return RedisUnavailable(f"Redis at {where} answered with an error: {text}")


async def verify(client: Client, url: str, timeout_s: float) -> None:
    """PING ``client`` (retrying connection errors for ``timeout_s``); raise :func:`explain`'s
    typed error when the URL cannot work, before any role or command starts its work.

    Raises
    ------
    ConfigError
        The URL names a database, mode or credentials the server refuses.
    RedisUnavailable
        Nothing answered within ``timeout_s``.
    """
    try:
        await with_retry(client.ping, timeout_s, client)
    except RedisUnavailable as e:
        raise explain(e.__cause__, url) if isinstance(e.__cause__, Exception) else e from e
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as e:
        raise explain(e, url) from e


async def ping(url: str, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url`` within ``timeout_s``."""
    client = aioredis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(await client.ping())
    except (*CONNECTION_ERRORS, redis.exceptions.RedisError):
        return False
    finally:
        await client.aclose()
