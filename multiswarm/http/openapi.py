"""The OpenAPI 3.1 document of the app: the JSON API, built from its route table
(:data:`multiswarm.http.routes.API`) and the body Structs' msgspec JSON schemas, and the app's
own routes (:data:`_OWN`: whoami, this document, login, logout, metrics, healthz), so it lists
exactly the routes the app serves but the dashboard's files (``/`` and ``/static/``: a page for
browsers, not API). tests/http/test_openapi.py compares it with the app's route table."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from multiswarm.http import metrics
from multiswarm.http.replies import ErrorReply, Health, Whoami
from multiswarm.http.routes import MAX_LIMIT, Route

#: Replies every route may give, besides its own success.
_ERRORS = {
    "400": "Malformed body or parameter",
    "401": "Missing or wrong bearer token",
    "403": (
        "The read-only token on a write; without any token configured, a Host other than "
        "loopback or a write from another origin"
    ),
    "404": "No such swarm, task or breaker",
    "409": "Conflict or illegal transition: nothing changed",
    "408": "The body did not arrive in time (timeout)",
    "413": "Body over 1 MiB (too_large)",
    "500": "A bug or a corrupt stored record (internal); the detail names the error's class",
    "503": (
        "Redis unavailable (unavailable); or, with MULTISWARM_WAIT_REPLICAS, a write made on "
        "the master that too few replicas acknowledged in time (not_replicated: retrying it "
        "is safe)"
    ),
}
#: Schemas of query parameters other than plain strings.
_QUERY = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}}
#: Security of a route that takes no token (the empty requirement).
_PUBLIC: list[dict[str, list[str]]] = []
#: ``/metrics`` and ``/healthz``: a token, or none with ``--open-scrape``.
_SCRAPE: list[dict[str, list[str]]] = [{"bearer": []}, {}]
#: Body of ``POST /login`` (:class:`multiswarm.http.app.Login`, which imports this module; the
#: test compares the two).
_LOGIN = {
    "title": "Login",
    "description": "``POST /login``: the token the dashboard asked for once.",
    "type": "object",
    "properties": {"token": {"type": "string"}},
    "required": ["token"],
    "additionalProperties": False,
}
_COOKIE = (
    "The token's role; with tokens configured, also sets the HttpOnly, SameSite=Strict "
    "cookie multiswarm_token holding the token (leading and trailing spaces stripped)"
)


class _Own(msgspec.Struct, frozen=True, kw_only=True):
    """One of the app's own routes (not in :data:`~multiswarm.http.routes.API`).

    ``path`` starts with ``{prefix}`` when under the API's prefix; ``ok`` maps success statuses
    to (description, media type and schema, or None: no body); ``errors`` are :data:`_ERRORS`
    keys; ``security`` None is the document's default (a bearer token).
    """

    method: str
    path: str
    summary: str
    ok: dict[str, tuple[str, tuple[str, dict[str, Any]] | None]]
    errors: tuple[str, ...]
    security: list[dict[str, list[str]]] | None = None
    body: str | None = None


_JSON = "application/json"


def _ref(name: str) -> tuple[str, dict[str, Any]]:
    """A JSON body of the component schema ``name``."""
    return _JSON, {"$ref": f"#/components/schemas/{name}"}


_OWN = (
    _Own(
        method="GET",
        path="{prefix}/whoami",
        summary="The caller's role (admin, read or open) and whether a token is required",
        ok={"200": ("OK (JSON)", _ref("Whoami"))},
        errors=("401", "403", "500"),
    ),
    _Own(
        method="GET",
        path="{prefix}/openapi.json",
        summary="This document",
        ok={"200": ("OK (JSON)", (_JSON, {"type": "object"}))},
        errors=("401", "403", "500"),
    ),
    _Own(
        method="POST",
        path="/login",
        summary="Check a token and keep it in the dashboard's cookie (no token needed to call)",
        ok={"200": (_COOKIE, _ref("Whoami"))},
        errors=("400", "401", "403", "408", "413", "500"),
        security=_PUBLIC,
        body="Login",
    ),
    _Own(
        method="POST",
        path="/logout",
        summary="Clear the dashboard's cookie (no token needed)",
        ok={"204": ("Cookie cleared; no body", None)},
        errors=("403", "500"),
        security=_PUBLIC,
    ),
    _Own(
        method="GET",
        path="/metrics",
        summary="Prometheus metrics (no token needed with --open-scrape)",
        ok={"200": ("OK (Prometheus text format)", (metrics.CONTENT_TYPE, {"type": "string"}))},
        errors=("401", "403", "500", "503"),
        security=_SCRAPE,
    ),
    _Own(
        method="GET",
        path="/healthz",
        summary="As /api/v1/health, for probes (no token needed with --open-scrape)",
        ok={
            "200": ("A leader holds the lease and Redis answers", _ref("Health")),
            "503": ("Not healthy: the reason (Redis unavailable, no leader)", _ref("Health")),
        },
        errors=("401", "403", "500"),
        security=_SCRAPE,
    ),
)


def _operation_id(method: str, path: str) -> str:
    return f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}"


def _errors(codes: Iterable[str]) -> dict[str, Any]:
    return {
        code: {
            "description": _ERRORS[code],
            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ErrorReply"}}},
        }
        for code in codes
    }


def _own(own: _Own, prefix: str) -> tuple[str, dict[str, Any]]:
    """The path and operation of one of the app's own routes."""
    path = own.path.replace("{prefix}", prefix)
    responses: dict[str, Any] = {}
    for status, (text, body) in own.ok.items():
        responses[status] = {"description": text}
        if body is not None:
            media, schema = body
            responses[status]["content"] = {media: {"schema": schema}}
    op: dict[str, Any] = {
        "summary": own.summary,
        "operationId": _operation_id(own.method, own.path.replace("{prefix}", "")),
        "parameters": [],
        "responses": {**responses, **_errors(own.errors)},
    }
    if own.security is not None:
        op["security"] = own.security
    if own.body is not None:
        media, schema = _ref(own.body)
        op["requestBody"] = {"required": True, "content": {media: {"schema": schema}}}
    return path, op


def document(routes: Iterable[Route], prefix: str) -> dict[str, Any]:
    """The OpenAPI document (a plain dict, ready to encode as JSON)."""
    routes = list(routes)
    bodies = sorted({r.body for r in routes if r.body is not None}, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(
        [*bodies, ErrorReply, Whoami, Health], ref_template="#/components/schemas/{name}"
    )
    components["Login"] = _LOGIN
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", r.path)
        ]
        params += [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": _QUERY.get(name, {"type": "string"}),
            }
            for name in r.query
        ]
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": _operation_id(r.method, r.path),
            "parameters": params,
            "responses": {
                str(r.ok): {"description": "Created (JSON)" if r.ok == 201 else "OK (JSON)"},
                **_errors(_ERRORS),
            },
        }
        if r.body is not None:
            op["requestBody"] = {
                "required": r.body.__name__ == "SubmitTask",
                "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}}},
            }
        paths.setdefault(prefix + r.path, {})[r.method.lower()] = op
    for own in _OWN:
        path, op = _own(own, prefix)
        paths.setdefault(path, {})[own.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "multiswarm operations API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
