"""Building a task's spec: :func:`task_spec` checks what a submission may carry (handler path,
ids, priority, lease, result TTL) before anything reaches Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from multiswarm.errors import BadRequest
from multiswarm.handlers import NAME_PATTERN
from multiswarm.keys import check_id
from multiswarm.messages import MAX_ATTEMPTS, PRIORITIES, TaskSpec, check_settings

#: Longest per-task result TTL (10 years, in ms).
MAX_RESULT_TTL_MS = 10 * 365 * 24 * 3600 * 1000
#: Longest handler name and task name, in characters: every listing returns both.
MAX_HANDLER_CHARS = 256
MAX_NAME_CHARS = 1024


#: Shortest task lease, in ms: a worker renews every third of it, and a renewal must fit in
#: that third with room for a Redis round trip and a busy event loop.
MIN_LEASE_MS = 1_000


def task_spec(
    handler: str,
    *,
    id: str | None = None,
    name: str = "",
    capabilities: Iterable[str] = (),
    priority: str = "normal",
    depends_on: Iterable[str] = (),
    max_attempts: int = 3,
    lease_ms: int = 30_000,
    timeout_ms: int = 300_000,
    backoff_ms: int = 1_000,
    backoff_max_ms: int = 60_000,
    result_ttl_ms: int | None = None,
) -> TaskSpec:
    """Build and validate one task definition.

    Parameters
    ----------
    handler:
        Import path ``package.module:function`` the worker runs: a name a worker could register
        (:data:`multiswarm.handlers.NAME_PATTERN`), at most :data:`MAX_HANDLER_CHARS` long.
    name:
        Free-form label, at most :data:`MAX_NAME_CHARS` long.
    capabilities:
        What a swarm must offer to take the task.
    priority:
        ``high`` | ``normal`` | ``low``.
    lease_ms:
        Visibility timeout: a running task whose worker stops renewing is re-queued after it.
        At least :data:`MIN_LEASE_MS`.
    timeout_ms:
        Longest a single execution may run; a timeout counts as a failed attempt.
    backoff_ms, backoff_max_ms:
        Retry delay ``backoff_ms * 2**(attempt-1)``, capped, times a jitter in [0.5, 1).
    result_ttl_ms:
        How long, in milliseconds, the task is kept once finished (record and result), in place
        of the deployment's ``MULTISWARM_RESULT_TTL_MS``. A completed task is kept longer while
        a task depending on it has not ended, since that one reads its result.

    Raises
    ------
    InvalidIdError, BadRequest
    """
    # a name no worker can register would wait forever; long ones would swell every listing
    if len(handler) > MAX_HANDLER_CHARS:
        raise BadRequest("BAD_REQUEST", f"handler longer than {MAX_HANDLER_CHARS} characters")
    if not NAME_PATTERN.fullmatch(handler):
        raise BadRequest("BAD_REQUEST", f"handler {handler!r} is not 'package.module:function'")
    if len(name) > MAX_NAME_CHARS:
        raise BadRequest("BAD_REQUEST", f"name longer than {MAX_NAME_CHARS} characters")
    if priority not in PRIORITIES:
        raise BadRequest("BAD_REQUEST", f"priority {priority!r} not in {sorted(PRIORITIES)}")
    caps = [check_id(c, "capability") for c in capabilities]
    # one edge per dependency however often it is named (submit_tasks.lua refuses repeats)
    deps = list(dict.fromkeys(check_id(d, "dependency id") for d in depends_on))
    if not 1 <= max_attempts <= MAX_ATTEMPTS or timeout_ms < 1 or backoff_ms < 0:
        raise BadRequest(
            "BAD_REQUEST",
            f"max_attempts must be in [1, {MAX_ATTEMPTS}], timeout_ms positive, backoff_ms not "
            "negative",
        )
    if lease_ms < MIN_LEASE_MS:
        raise BadRequest(
            "BAD_REQUEST",
            f"lease_ms={lease_ms} is below the minimum of "
            f"{MIN_LEASE_MS} ms (a worker renews every third of a lease)",
        )
    if result_ttl_ms is not None and not 1 <= result_ttl_ms <= MAX_RESULT_TTL_MS:
        raise BadRequest(
            "BAD_REQUEST", f"result_ttl_ms {result_ttl_ms} not in [1, {MAX_RESULT_TTL_MS}]"
        )
    return check_settings(
        TaskSpec(
            id=check_id(id or uuid.uuid4().hex, "task id"),
            handler=handler,
            name=name,
            caps=",".join(caps),
            prio=PRIORITIES[priority],
            max_attempts=max_attempts,
            lease_ms=lease_ms,
            timeout_ms=timeout_ms,
            backoff_ms=backoff_ms,
            backoff_max_ms=max(backoff_ms, backoff_max_ms),
            deps=",".join(deps),
            result_ttl_ms=result_ttl_ms or 0,
        )
    )
