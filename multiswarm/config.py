"""Settings from a URL or the classic environment variables.

Defaults are the original system's (DESIGN.md, "Configuration"): 30 s heartbeat timeout and
leader lease, 24 h state TTL, 10 snapshots, 5 min snapshot interval, 100 swarms.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping

import msgspec

from multiswarm.errors import ConfigError
from multiswarm.keys import check_id
from multiswarm.logs import LOG_FORMATS
from multiswarm.urls import redact

#: Most tasks a worker may hold claimed per agent slot beyond those running (agent_prefetch).
MAX_PREFETCH = 16

#: How long a script's outcome is kept under its request id (must match ``REQUEST_TTL_MS`` in
#: scripts/lua/lib/01_common.lua); every retry window must be shorter.
REQUEST_TTL_MS = 120_000

#: Used when neither MULTISWARM_REDIS_URL nor REDIS_HOST is set.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Timings every process of a deployment must share, with the variable that sets each: a
#: registry and a worker that disagree on the heartbeat declare each other dead, two leaders on
#: different leases break the failover bound. Stored once in Redis (multiswarm.deployment).
DEPLOYMENT_ENV = {
    "heartbeat_timeout_ms": "HEARTBEAT_INTERVAL",
    "lease_ms": "MULTISWARM_LEASE_MS",
    "task_lease_ms": "MULTISWARM_TASK_LEASE_MS",
    "result_ttl_ms": "MULTISWARM_RESULT_TTL_MS",
    "partitions": "MULTISWARM_PARTITIONS",
}
#: Most coordination partitions: each costs every role a loop and every fan-out read a command.
MAX_PARTITIONS = 256
#: Confidence at or above which the state-manager process recovers a swarm on its own.
DEFAULT_AUTO_RECOVER_MIN_CONFIDENCE = 0.75


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Process settings. Times are milliseconds (``*_ms``) unless the name says otherwise.

    Attributes
    ----------
    redis_url:
        ``redis://``, ``rediss://`` (TLS), ``unix://``, ``redis+sentinel://h:p[,h:p]/master[/db]``
        or ``redis+cluster://h:p``.
    redis_url_explicit:
        False when ``redis_url`` is only the default; ``up``/``demo`` may then start a private
        server if nothing answers there.
    namespace:
        Key prefix and hash tag of the deployment (``{swarm}:...``).
    max_swarms:
        ``SWARM_MAX_COUNT``: most live swarms (100).
    state_ttl_ms:
        ``SWARM_TTL``: TTL of per-swarm state (24 h).
    heartbeat_timeout_ms:
        ``HEARTBEAT_INTERVAL``: a worker silent this long is dead (30 s); it beats every third.
    snapshot_interval_ms:
        ``SNAPSHOT_INTERVAL``: automatic snapshots (5 min).
    lease_ms:
        ``MULTISWARM_LEASE_MS``: leader lease (30 s), renewed every third.
    task_lease_ms:
        ``MULTISWARM_TASK_LEASE_MS``: visibility timeout of a running task (30 s), renewed every
        third while the handler runs.
    result_ttl_ms:
        ``MULTISWARM_RESULT_TTL_MS``: how long a finished task (record, payload, result) is kept
        (24 h); a task's own ``result_ttl_ms`` replaces it. Memory held by finished tasks is
        about completion rate x TTL x size per task (~1.5 KB with 300-byte payload and result).
    socket_timeout_ms:
        ``MULTISWARM_SOCKET_TIMEOUT_MS``: longest wait for one reply (5 s). A Redis stalled
        longer (``DEBUG SLEEP``, a slow fork, a lost reply) surfaces as a timeout and the call is
        retried with the same request id, so retried scripts act once (docs/decisions.md).
    connect_timeout_ms:
        ``MULTISWARM_CONNECT_TIMEOUT_MS``: longest wait for a TCP/TLS connection (2 s).
    reconnect_timeout_s:
        How long connection errors and timeouts are retried with backoff (60 s) before
        :class:`~multiswarm.errors.RedisUnavailable`. With two socket timeouts and 2 s of
        backoff it must stay below the 120 s for which a script's recorded outcome is kept
        (``REQUEST_TTL_MS`` in ``scripts/lua/lib``): 108 s at most with the 5 s timeout.
    message_secret:
        ``MULTISWARM_SECRET``: HMAC-SHA256 secret; messengers given it sign every envelope and
        refuse unsigned, forged or replayed ones (empty: none).
    auto_recover_min_confidence:
        ``MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE``: the state-manager process applies recovery
        plans at or above this confidence, in [0, 1], and leaves the rest to an operator (0.75).
    wait_replicas:
        ``MULTISWARM_WAIT_REPLICAS``: replicas that must acknowledge each submission, result,
        lease change and leader election before the caller hears it succeeded (``WAIT``); 0
        (default) answers after the master alone, so a failover may lose the last writes
        (docs/decisions.md, "Durability at failover").
    wait_timeout_ms:
        ``MULTISWARM_WAIT_TIMEOUT_MS``: how long one ``WAIT`` waits for them (1000); it is
        repeated until ``reconnect_timeout_s`` has passed, then fewer is a
        :class:`~multiswarm.errors.ReplicaAckError`.
    wait_aof:
        ``MULTISWARM_WAIT_AOF=1``: the replicas must have fsynced the write to their
        append-only file (``WAITAOF 0 N timeout``, Redis 7.2+, ``appendonly yes`` on the
        replicas: one without AOF never acknowledges). On an older server ``WAIT`` is used and
        a warning logged. Needs ``wait_replicas``.
    explicit:
        Which of the deployment-wide timings (:data:`DEPLOYMENT_ENV`) this process was given
        explicitly (environment or override) rather than by default: those must agree with
        the values stored in Redis (multiswarm.deployment), the others adopt them.
    agent_concurrency:
        ``MULTISWARM_AGENT_CONCURRENCY``: tasks one agent process of a worker runs at once (1);
        a worker's ``--concurrency`` replaces it.
    agent_prefetch:
        ``MULTISWARM_AGENT_PREFETCH``: tasks a worker holds claimed per agent slot beyond those
        running, so a freed slot starts the next one without a round trip (2, Dramatiq's
        default per worker thread; decision 93); a swarm's capacity is (1 + this) x its slots.
        0 suits tasks that run for minutes: nothing waits behind a busy slot that an idle
        swarm could run (Celery's advice for long tasks). A worker's ``--prefetch`` replaces
        it.
    partitions:
        ``MULTISWARM_PARTITIONS``: coordination partitions of the namespace (1; decision 44),
        each a complete coordination domain in its own hash slot, so a Redis Cluster spreads
        them over its masters. Deployment-wide like the timings; change it only on a drained
        deployment (docs/scaling.md).
    log_format:
        ``MULTISWARM_LOG_FORMAT``: ``text`` (default) or ``json`` (one JSON object per line,
        :mod:`multiswarm.logs`); processes started by ``up`` and ``demo`` inherit it.
    """

    redis_url: str = DEFAULT_REDIS_URL
    redis_url_explicit: bool = False
    namespace: str = "swarm"
    max_swarms: int = 100
    state_ttl_ms: int = 24 * 3600 * 1000
    heartbeat_timeout_ms: int = 30_000
    snapshot_interval_ms: int = 5 * 60 * 1000
    snapshots_kept: int = 10
    lease_ms: int = 30_000
    task_lease_ms: int = 30_000
    result_ttl_ms: int = 24 * 3600 * 1000
    archive_ms: int = 7 * 24 * 3600 * 1000
    socket_timeout_ms: int = 5_000
    connect_timeout_ms: int = 2_000
    reconnect_timeout_s: float = 60.0
    message_secret: str = ""
    auto_recover_min_confidence: float = DEFAULT_AUTO_RECOVER_MIN_CONFIDENCE
    explicit: frozenset[str] = frozenset()
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000
    wait_aof: bool = False
    agent_concurrency: int = 1
    agent_prefetch: int = 2
    log_format: str = "text"
    partitions: int = 1

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied (validated again)."""
        return validate(msgspec.structs.replace(self, **changes))


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name) or "0"
    if raw not in ("0", "1"):
        raise ConfigError(f"{name} must be 0 or 1, not {raw!r}")
    return raw == "1"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def env_secret(env: Mapping[str, str] | None = None) -> str:
    """``MULTISWARM_SECRET`` (``""`` when unset): the default of a messenger given no secret."""
    return (os.environ if env is None else env).get("MULTISWARM_SECRET", "")


def validate(s: Settings) -> Settings:
    """Check ranges; raise :class:`ConfigError` for the first bad value."""
    try:
        check_id(s.namespace, "namespace")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if s.redis_url.split("://", 1)[0] not in (
        "redis",
        "rediss",
        "unix",
        "redis+sentinel",
        "redis+cluster",
    ):
        raise ConfigError(f"unsupported Redis URL scheme in {redact(s.redis_url)!r}")
    for name in (
        "max_swarms",
        "heartbeat_timeout_ms",
        "lease_ms",
        "task_lease_ms",
        "snapshot_interval_ms",
        "state_ttl_ms",
        "snapshots_kept",
        "socket_timeout_ms",
        "connect_timeout_ms",
        "result_ttl_ms",
        "agent_concurrency",
        "partitions",
    ):
        if getattr(s, name) < 1:
            raise ConfigError(f"{name} must be positive")
    if not 0 <= s.agent_prefetch <= MAX_PREFETCH:
        raise ConfigError(
            f"agent_prefetch (MULTISWARM_AGENT_PREFETCH) must be in [0, {MAX_PREFETCH}], "
            f"not {s.agent_prefetch}"
        )
    if not 0.0 <= s.auto_recover_min_confidence <= 1.0:
        raise ConfigError(
            f"auto_recover_min_confidence (MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE)"
            f" must be in [0, 1], not {s.auto_recover_min_confidence}"
        )
    if s.wait_replicas and s.redis_url.startswith("redis+cluster://"):
        raise ConfigError(
            "MULTISWARM_WAIT_REPLICAS is not supported on Redis Cluster yet: use it with a "
            "single master and replicas (Sentinel)"
        )
    if s.wait_aof and not s.wait_replicas:
        raise ConfigError(
            "MULTISWARM_WAIT_AOF needs MULTISWARM_WAIT_REPLICAS (replicas to wait for)"
        )
    if s.log_format not in LOG_FORMATS:
        raise ConfigError(
            f"log_format (MULTISWARM_LOG_FORMAT) must be one of {', '.join(LOG_FORMATS)}, "
            f"not {s.log_format!r}"
        )
    if s.partitions > MAX_PARTITIONS:
        raise ConfigError(
            f"partitions (MULTISWARM_PARTITIONS) must be at most {MAX_PARTITIONS}, not "
            f"{s.partitions}"
        )
    if s.lease_ms < 300:
        raise ConfigError("lease_ms below 300 ms leaves no time to renew")
    # a call's last retry may start as late as its first attempt's read (a socket timeout), the
    # window, the longest backoff (2 s, connection.py) and its own read after the first run
    span_ms = s.reconnect_timeout_s * 1000 + 2 * s.socket_timeout_ms + 2000
    if not (s.reconnect_timeout_s > 0 and span_ms < REQUEST_TTL_MS):
        raise ConfigError(
            f"reconnect_timeout_s + 2 x socket_timeout_ms + 2 s must stay below "
            f"{REQUEST_TTL_MS // 1000} s: a retry after a script's recorded outcome expired "
            "could run it twice"
        )
    return s


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``MULTISWARM_*`` and the classic variables, then ``overrides``.

    ``MULTISWARM_REDIS_URL`` wins over ``REDIS_HOST``/``REDIS_PORT``/``REDIS_DB``/
    ``REDIS_PASSWORD``. Overrides whose value is None are ignored, so CLI options can be passed
    through unconditionally.

    Raises
    ------
    ConfigError
        A variable is malformed or out of range.
    """
    env = os.environ if env is None else env
    url = env.get("MULTISWARM_REDIS_URL")
    explicit = bool(url)
    if not url and env.get("REDIS_HOST"):
        explicit = True
        password = env.get("REDIS_PASSWORD")
        # percent-encoded: a password with '@', '/' or ':' must not change the URL's shape
        auth = f":{urllib.parse.quote(password, safe='')}@" if password else ""
        port = _int(env, "REDIS_PORT", 6379)
        db = _int(env, "REDIS_DB", 0, minimum=0)
        url = f"redis://{auth}{env['REDIS_HOST']}:{port}/{db}"
    settings = Settings(
        redis_url=url or DEFAULT_REDIS_URL,
        redis_url_explicit=explicit,
        namespace=env.get("MULTISWARM_NAMESPACE") or "swarm",
        max_swarms=_int(env, "SWARM_MAX_COUNT", 100),
        state_ttl_ms=_int(env, "SWARM_TTL", 24 * 3600 * 1000),
        heartbeat_timeout_ms=_int(env, "HEARTBEAT_INTERVAL", 30_000),
        snapshot_interval_ms=_int(env, "SNAPSHOT_INTERVAL", 5 * 60 * 1000),
        lease_ms=_int(env, "MULTISWARM_LEASE_MS", 30_000),
        task_lease_ms=_int(env, "MULTISWARM_TASK_LEASE_MS", 30_000),
        result_ttl_ms=_int(env, "MULTISWARM_RESULT_TTL_MS", 24 * 3600 * 1000),
        socket_timeout_ms=_int(env, "MULTISWARM_SOCKET_TIMEOUT_MS", 5_000),
        wait_replicas=_int(env, "MULTISWARM_WAIT_REPLICAS", 0, minimum=0),
        wait_timeout_ms=_int(env, "MULTISWARM_WAIT_TIMEOUT_MS", 1000),
        wait_aof=_flag(env, "MULTISWARM_WAIT_AOF"),
        connect_timeout_ms=_int(env, "MULTISWARM_CONNECT_TIMEOUT_MS", 2_000),
        message_secret=env_secret(env),
        auto_recover_min_confidence=_float(
            env, "MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE", DEFAULT_AUTO_RECOVER_MIN_CONFIDENCE
        ),
        agent_concurrency=_int(env, "MULTISWARM_AGENT_CONCURRENCY", 1),
        agent_prefetch=_int(env, "MULTISWARM_AGENT_PREFETCH", 2, minimum=0),
        log_format=env.get("MULTISWARM_LOG_FORMAT") or "text",
        partitions=_int(env, "MULTISWARM_PARTITIONS", 1),
    )
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "redis_url" in changes:
        changes["redis_url_explicit"] = True
    given = {f for f, var in DEPLOYMENT_ENV.items() if env.get(var)}
    given |= changes.keys() & DEPLOYMENT_ENV.keys()
    if given:
        changes["explicit"] = frozenset(given)
    return validate(msgspec.structs.replace(settings, **changes) if changes else settings)
