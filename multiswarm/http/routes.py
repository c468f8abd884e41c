"""The JSON routes under ``/api/v1/``: each one call of the :class:`~multiswarm.Multiswarm`
facade, its reply encoded as it comes (msgspec Structs), its errors mapped by
:func:`multiswarm.http.replies.error_status`.

:data:`API` is the one table of routes: the app mounts it and the OpenAPI document describes it,
so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from multiswarm.api import Multiswarm
from multiswarm.api_types import TaskOptions
from multiswarm.errors import BadRequest, IllegalTransition, NotFound
from multiswarm.http.replies import (
    ApplyRecovery,
    BreakerReset,
    Cancelled,
    CancelTask,
    Health,
    Paused,
    SubmitTask,
    Submitted,
    decode_body,
    read_body,
    reply,
)

Handler = Callable[[Multiswarm, Request], Awaitable[Response]]

#: Recovery outcomes that leave the swarm recovered (``already_applied``: by an earlier call).
APPLIED = frozenset({"applied", "resumed", "already_applied"})
#: Most items one list request returns (``limit`` is clamped to it).
MAX_LIMIT = 1000


class Route(msgspec.Struct, frozen=True):
    """One API route: what it does, for the app and for the OpenAPI document.

    Attributes
    ----------
    method, path:
        ``GET`` | ``POST``; the path under ``/api/v1``, ``{name}`` for path parameters.
    handler:
        The coroutine answering it.
    summary:
        One line for the OpenAPI document.
    body:
        The Struct a POST body decodes into (None: no body).
    query:
        Names of its query parameters.
    ok:
        Its success status (201 for a created task).
    """

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[msgspec.Struct] | None = None
    query: tuple[str, ...] = ()
    ok: int = 200


def _limit(req: Request, default: int) -> int:
    raw = req.query_params.get("limit", str(default))
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("BAD_REQUEST", f"limit must be an integer, not {raw!r}") from None
    if value < 1:
        raise BadRequest("BAD_REQUEST", "limit must be at least 1")
    return min(value, MAX_LIMIT)


def _param(req: Request, name: str) -> str:
    value: str = req.path_params[name]
    return value


async def status(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.status())


async def health(ms: Multiswarm, req: Request) -> Response:
    report = await ms.health()
    return reply(Health(report.ok, report.reason), 200 if report.ok else 503)


async def leader(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.leader())


async def swarms(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.list_swarms(req.query_params.get("status") or None))


async def swarm(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.get_swarm(_param(req, "id")))


async def pause(ms: Multiswarm, req: Request) -> Response:
    swarm_id = _param(req, "id")
    return reply(Paused(swarm_id, True, await ms.pause_swarm(swarm_id)))


async def resume(ms: Multiswarm, req: Request) -> Response:
    swarm_id = _param(req, "id")
    return reply(Paused(swarm_id, False, await ms.resume_swarm(swarm_id)))


async def agents(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.list_agents())


async def workers(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.list_workers())


async def tasks(ms: Multiswarm, req: Request) -> Response:
    wanted = req.query_params.get("status") or None
    return reply(await ms.list_tasks(status=wanted, limit=_limit(req, 50)))


async def task(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.get_task(_param(req, "id")))


async def submit(ms: Multiswarm, req: Request) -> Response:
    body = decode_body(await read_body(req), SubmitTask)
    options = TaskOptions(
        capabilities=body.capabilities,
        priority=body.priority,
        depends_on=body.depends_on,
        name=body.name,
    )
    task_id = await ms.distribute_task(
        body.handler,
        body.payload,
        options,
        max_attempts=body.max_attempts,
        timeout_ms=body.timeout_ms,
        id=body.id,
    )
    return reply(Submitted(task_id), 201)


async def cancel(ms: Multiswarm, req: Request) -> Response:
    task_id = _param(req, "id")
    body = decode_body(await read_body(req), CancelTask, optional=True)
    outcome = await ms.cancel_task(task_id, reason=body.reason)
    if outcome != "cancelled":  # 'ended:<status>': nothing changed
        raise IllegalTransition("ILLEGAL_TRANSITION", f"task {task_id} already {outcome}")
    return reply(Cancelled(task_id, outcome))


async def breakers(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.list_breakers())


async def breaker_reset(ms: Multiswarm, req: Request) -> Response:
    name = _param(req, "name")
    if not await ms.reset_breaker(name):
        raise NotFound("NOT_FOUND", f"breaker {name}")
    return reply(BreakerReset(name, True))


async def recoveries(ms: Multiswarm, req: Request) -> Response:
    # without the state each plan would restore: unbounded, and not for read-only tokens
    return reply([plan.to_dict() for plan in await ms.list_recoveries()])


async def recover(ms: Multiswarm, req: Request) -> Response:
    body = decode_body(await read_body(req), ApplyRecovery, optional=True)
    swarm_id = _param(req, "swarm")
    outcome = await ms.recover_swarm(
        swarm_id, source=body.source, min_confidence=body.min_confidence
    )
    if outcome.outcome not in APPLIED:  # not_interrupted, stale_plan, below_threshold...
        detail = f"swarm {swarm_id}: {outcome.outcome}"
        raise IllegalTransition(
            outcome.outcome.upper(), detail + (f" ({outcome.detail})" if outcome.detail else "")
        )
    return reply(outcome)


async def dead_letters(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.dead_letters(_limit(req, 20)))


async def statistics(ms: Multiswarm, req: Request) -> Response:
    return reply(await ms.statistics())


def _routes() -> tuple[Route, ...]:
    r = Route
    return (
        r("GET", "/status", status, "Swarms, workers, leader and task counts"),
        r("GET", "/health", health, "200 when a leader holds the lease and Redis answers"),
        r("GET", "/leader", leader, "The leader and its lease (null when none)"),
        r("GET", "/swarms", swarms, "Every swarm", query=("status",)),
        r("GET", "/swarms/{id}", swarm, "One swarm"),
        r("POST", "/swarms/{id}/pause", pause, "Pause a swarm: no dispatch, no claims"),
        r("POST", "/swarms/{id}/resume", resume, "Resume a paused swarm"),
        r("GET", "/agents", agents, "Every agent of every worker, with its health"),
        r("GET", "/workers", workers, "Every registered worker"),
        r("GET", "/tasks", tasks, "Tasks, newest first", query=("status", "limit")),
        r("GET", "/tasks/{id}", task, "One task"),
        r("POST", "/tasks", submit, "Submit a task; replies its id", body=SubmitTask, ok=201),
        r("POST", "/tasks/{id}/cancel", cancel, "Cancel a task", body=CancelTask),
        r("GET", "/breakers", breakers, "Every circuit breaker"),
        r("POST", "/breakers/{name}/reset", breaker_reset, "Close a breaker"),
        r("GET", "/recovery", recoveries, "Interrupted swarms with their recovery plans"),
        r("POST", "/recovery/{swarm}/apply", recover, "Recover a swarm", body=ApplyRecovery),
        r(
            "GET",
            "/dead-letters",
            dead_letters,
            "The newest refused messages, counts per reason",
            query=("limit",),
        ),
        r("GET", "/statistics", statistics, "Task counts, counters, swarms, leader"),
    )


API: tuple[Route, ...] = _routes()
