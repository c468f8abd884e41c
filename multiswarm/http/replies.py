"""Request bodies, replies and the one mapping from errors to HTTP statuses.

Every error reply is ``{"error": code, "detail": text}`` (:class:`ErrorReply`) with the status of
:func:`error_reply`; bodies are decoded by one typed ``msgspec`` decoder per Struct, so a body
that is not JSON, or not the Struct, is a 400 before anything runs.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from multiswarm.errors import (
    AlreadyExists,
    BadRequest,
    CapacityExceeded,
    IllegalTransition,
    InvalidArgumentError,
    InvalidIdError,
    LowConfidence,
    MessageTooLargeError,
    MultiswarmError,
    NoRecoverySource,
    NotFound,
    RedisUnavailable,
    ReplicaAckError,
    ScriptError,
    StalePlan,
    UnknownDependency,
    VersionConflict,
)
from multiswarm.http.auth import AuthError

S = TypeVar("S", bound=msgspec.Struct)

#: Largest request body read, in bytes: a task payload beyond this belongs in object storage.
MAX_BODY_BYTES = 1 << 20
#: Longest wait for a request's body, in seconds: a client that declares a body and sends it
#: slowly (or never) gets a 408 instead of holding its connection open.
BODY_TIMEOUT_S = 10.0


class BodyTimeout(MultiswarmError):
    """The request's body did not arrive within :data:`BODY_TIMEOUT_S` (408 ``timeout``)."""


class ErrorReply(msgspec.Struct, frozen=True):
    """Body of every error: a stable machine code and a human-readable detail."""

    error: str
    detail: str


class SubmitTask(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/tasks``.

    Attributes
    ----------
    handler:
        ``pkg.mod:fn``; the worker that runs it must allow its prefix.
    payload:
        Any JSON value, handed to the handler.
    capabilities:
        Capabilities a swarm needs to run it.
    priority:
        ``low`` | ``normal`` | ``high``.
    depends_on:
        Ids of tasks that must complete first (submitted earlier).
    name:
        Free-form label.
    max_attempts:
        Attempts before the task is dead-lettered, 1-1000 (None: the default, 3).
    timeout_ms:
        Longest run of one attempt, in milliseconds (None: the default).
    id:
        The task's id (None: a random one). Submitting an id again does nothing, so a client
        that retries after a lost reply or a 503 should give one.
    """

    handler: str
    payload: Any = None
    capabilities: list[str] = []
    priority: str = "normal"
    depends_on: list[str] = []
    name: str = ""
    max_attempts: int | None = None
    timeout_ms: int | None = None
    id: str | None = None


class Submitted(msgspec.Struct, frozen=True):
    """Reply of ``POST /api/v1/tasks``."""

    id: str


class CancelTask(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/tasks/{id}/cancel`` (the body is optional)."""

    reason: str = "cancelled via api"


class Cancelled(msgspec.Struct, frozen=True):
    """Reply of a cancel: the task and the outcome the task store reported."""

    id: str
    outcome: str


class Paused(msgspec.Struct, frozen=True):
    """Reply of pause and resume: ``changed`` is False when it already was."""

    id: str
    paused: bool
    changed: bool


class BreakerReset(msgspec.Struct, frozen=True):
    """Reply of ``POST /api/v1/breakers/{name}/reset``."""

    name: str
    reset: bool


class ApplyRecovery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/recovery/{swarm}/apply`` (the body is optional).

    Attributes
    ----------
    source:
        ``state`` | ``checkpoint`` | ``snapshot`` (the newest valid one of that kind); None
        lets the planner choose.
    min_confidence:
        Refuse (409) when the plan's confidence is lower; None applies any plan.
    """

    source: str | None = None
    min_confidence: float | None = None


class Whoami(msgspec.Struct, frozen=True):
    """Reply of ``GET /api/v1/whoami``: the caller's role, for the dashboard's buttons."""

    role: str
    auth_required: bool


class Health(msgspec.Struct, frozen=True):
    """Body of ``GET /api/v1/health`` and ``/healthz`` (200 when ``ok``, else 503)."""

    ok: bool
    reason: str


#: error class -> (status, code); the first match in this order wins (subclasses first)
_STATUSES: tuple[tuple[type[BaseException], int, str], ...] = (
    (NotFound, 404, "not_found"),
    (NoRecoverySource, 404, "not_found"),
    (UnknownDependency, 400, "bad_request"),
    (BadRequest, 400, "bad_request"),
    (InvalidIdError, 400, "bad_request"),
    (InvalidArgumentError, 400, "bad_request"),
    (MessageTooLargeError, 413, "too_large"),
    (BodyTimeout, 408, "timeout"),
    (msgspec.DecodeError, 400, "bad_request"),
    (msgspec.ValidationError, 400, "bad_request"),
    (IllegalTransition, 409, "conflict"),
    (AlreadyExists, 409, "conflict"),
    (VersionConflict, 409, "conflict"),
    (StalePlan, 409, "conflict"),
    (LowConfidence, 409, "conflict"),
    (CapacityExceeded, 409, "conflict"),
    (RedisUnavailable, 503, "unavailable"),
    # made on the master, not yet on enough replicas: retrying it (same id) is safe
    (ReplicaAckError, 503, "not_replicated"),
)


def error_status(exc: BaseException) -> tuple[int, ErrorReply]:
    """The HTTP status and body of an error raised by a route.

    Auth errors keep their own 401/403; a MultiswarmError not listed above (a corrupt stored
    record, a script error) is a 500 named by its class, so a client can still tell what went
    wrong; any other exception is a 500 ``internal`` whose detail names only its class (the
    traceback goes to the server's log, not to the client).
    """
    if isinstance(exc, AuthError):
        code = "unauthorized" if exc.status == 401 else "forbidden"
        return exc.status, ErrorReply(code, exc.detail)
    for cls, status, code in _STATUSES:
        if isinstance(exc, cls):
            # a script's refusal reads "task t1", not "NOT_FOUND: task t1": the code is above
            detail = exc.detail if isinstance(exc, ScriptError) and exc.detail else str(exc)
            return status, ErrorReply(code, detail)
    if isinstance(exc, MultiswarmError):
        return 500, ErrorReply("internal", f"{type(exc).__name__}: {exc}")
    return 500, ErrorReply("internal", f"unexpected {type(exc).__name__}; see the server log")


def error_reply(exc: BaseException) -> Response:
    """:func:`error_status` as a JSON response (401 replies name the Bearer scheme)."""
    status, body = error_status(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(msgspec.json.encode(body), status, headers, "application/json")


def http_error(status: int, detail: str) -> Response:
    """A JSON error for statuses Starlette raises itself (unknown route 404, method 405)."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "bad_request")
    return Response(
        msgspec.json.encode(ErrorReply(code, detail)), status, media_type="application/json"
    )


def reply(value: Any, status: int = 200) -> Response:
    """``value`` (Structs, lists, dicts of them) as a JSON response."""
    return Response(msgspec.json.encode(value), status, media_type="application/json")


async def read_body(req: Request) -> bytes:
    """The request's body, read no further than :data:`MAX_BODY_BYTES`: a larger one (by its
    ``Content-Length``, or as it streams in) is refused before it is held in memory; and no
    longer than :data:`BODY_TIMEOUT_S`.

    Raises
    ------
    MessageTooLargeError
        Over the limit (413).
    BodyTimeout
        The body did not arrive in time (408).
    """
    declared = req.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise MessageTooLargeError(f"body of {declared} bytes, over {MAX_BODY_BYTES}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in req.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise MessageTooLargeError(f"body over {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"body not received within {BODY_TIMEOUT_S:g} s") from None
    return b"".join(chunks)


def decode_body(raw: bytes, kind: type[S], optional: bool = False) -> S:
    """Decode a request body into ``kind``; an empty body is ``kind()`` when ``optional``.

    Raises
    ------
    BadRequest
        Not JSON, not an object of ``kind``'s shape.
    MessageTooLargeError
        Larger than :data:`MAX_BODY_BYTES`.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise MessageTooLargeError(f"body over {MAX_BODY_BYTES} bytes")
    if optional and not raw.strip():
        return kind()
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadRequest("BAD_REQUEST", f"malformed body: {e}") from e
