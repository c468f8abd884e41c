"""The no-op handlers of benchmarks/bench_peers.py, one per task system, for every worker.

Each handler runs one Redis round trip: :data:`COUNT_LUA` INCRs the phase's counter (so a task run
twice shows in the final count) and, on the first and on the target-th run, pushes the Redis
server time on the phase's wake-up list, which the driver waits on with BLPOP (no polling, and the
same clock for start and end). The script goes as EVAL, never EVALSHA, so in ``INFO
commandstats`` its cost stays apart from multiswarm's own scripts (which run by FCALL).

The Redis URL comes from ``BENCH_PEERS_REDIS_URL``. A peer is imported only when its worker or the
driver asks for it, so a multiswarm agent process does not pay for importing Celery or Dramatiq.

Entry points: ``peer_tasks:ms_count`` (multiswarm), ``peer_tasks:dramatiq_setup`` (dramatiq CLI),
``peer_tasks.saq_settings`` (saq CLI), ``peer_tasks:celery_app`` (celery -A),
``peer_tasks.count`` (RQ).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import redis
import redis.asyncio

URL_ENV = "BENCH_PEERS_REDIS_URL"

#: KEYS[1] counter, KEYS[2] target count, KEYS[3] wake-up list. Returns the count after this run.
#: Pushes "<count> <seconds> <microseconds>" (server TIME) on the first and on the target-th run.
COUNT_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or n == tonumber(redis.call('GET', KEYS[2]) or '-1') then
  local t = redis.call('TIME')
  redis.call('RPUSH', KEYS[3], n .. ' ' .. t[1] .. ' ' .. t[2])
end
return n
"""

#: Queue names (Dramatiq, SAQ, Celery, RQ); multiswarm's tasks carry this capability.
QUEUE = "bench"
#: multiswarm handler path, under the worker's ``--allow-handlers peer_tasks:`` prefix.
MS_HANDLER = "peer_tasks:ms_count"


def phase_keys(counter: str) -> list[str]:
    """Counter, target and wake-up list of one phase (one hash slot: a cluster would take them)."""
    return [f"{{{counter}}}:count", f"{{{counter}}}:target", f"{{{counter}}}:done"]


def redis_url() -> str:
    return os.environ[URL_ENV]


@functools.cache
def _client() -> redis.Redis:
    # thread-safe pool: Dramatiq's 8 threads per process share it
    return redis.Redis.from_url(redis_url())


def count(counter: str) -> int:
    """The no-op task: count this run. Returns the count after it."""
    return int(_client().eval(COUNT_LUA, 3, *phase_keys(counter)))


_async_clients: dict[int, redis.asyncio.Redis] = {}


async def acount(counter: str) -> int:
    """:func:`count` for event-loop workers (one client per process)."""
    client = _async_clients.get(os.getpid())
    if client is None:
        client = _async_clients[os.getpid()] = redis.asyncio.Redis.from_url(redis_url())
    return int(await client.eval(COUNT_LUA, 3, *phase_keys(counter)))


# -- multiswarm -------------------------------------------------------------------------------
def ms_count(payload: str, ctx: Any) -> int:
    """multiswarm handler: the payload is the counter name."""
    return count(payload)


# -- Dramatiq: 2 processes x 8 threads, results stored ----------------------------------------
@functools.cache
def dramatiq_setup() -> Any:
    """Set the global broker (Redis, Results middleware on Redis) and declare the actor."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    # the two constructors are the only untyped calls of a typed package
    broker = RedisBroker(url=redis_url())  # type: ignore[no-untyped-call]
    broker.add_middleware(Results(backend=RedisBackend(url=redis_url())))  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    return dramatiq.actor(actor_name="count", queue_name=QUEUE, store_results=True)(count)


# -- SAQ: 2 processes, default concurrency ----------------------------------------------------
async def saq_count(ctx: Any, *, counter: str) -> int:
    return await acount(counter)


def saq_queue() -> Any:
    from saq import Queue

    return Queue.from_url(redis_url(), name=QUEUE)


def saq_settings() -> dict[str, Any]:
    """Settings of ``saq peer_tasks.saq_settings`` (SAQ calls a callable)."""
    return {"queue": saq_queue(), "functions": [("count", saq_count)]}


# -- Celery: solo pool, Redis broker and result backend ---------------------------------------
@functools.cache
def celery_setup() -> tuple[Any, Any]:
    """The app and its task."""
    from celery import Celery

    app = Celery("peer_tasks", broker=redis_url(), backend=redis_url())
    app.conf.broker_connection_retry_on_startup = True
    task = app.task(name="peer_tasks.count")(count)
    return app, task


def __getattr__(name: str) -> Any:
    # `celery -A peer_tasks:celery_app` wants the app itself, built only when asked for
    if name == "celery_app":
        return celery_setup()[0]
    raise AttributeError(name)
