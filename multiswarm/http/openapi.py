"""The OpenAPI 3.1 document of the JSON API, built from the route table
(:data:`multiswarm.http.routes.API`) and the body Structs' msgspec JSON schemas, so it lists
exactly the routes the app serves."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from multiswarm.http.replies import ErrorReply
from multiswarm.http.routes import MAX_LIMIT, Route

#: Replies every route may give, besides its own success.
_ERRORS = {
    "400": "Malformed body or parameter",
    "401": "Missing or wrong bearer token",
    "403": "The read-only token on a write",
    "404": "No such swarm, task or breaker",
    "409": "Conflict or illegal transition: nothing changed",
    "408": "The body did not arrive in time (timeout)",
    "413": "Body over 1 MiB",
    "503": (
        "Redis unavailable (unavailable); or, with MULTISWARM_WAIT_REPLICAS, a write made on "
        "the master that too few replicas acknowledged in time (not_replicated: retrying it "
        "is safe)"
    ),
}
#: Schemas of query parameters other than plain strings.
_QUERY = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}}


def document(routes: Iterable[Route], prefix: str) -> dict[str, Any]:
    """The OpenAPI document (a plain dict, ready to encode as JSON)."""
    routes = list(routes)
    bodies = sorted({r.body for r in routes if r.body is not None}, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(
        [*bodies, ErrorReply], ref_template="#/components/schemas/{name}"
    )
    error_ref = {"$ref": "#/components/schemas/ErrorReply"}
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
            "operationId": f"{r.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', r.path)}",
            "parameters": params,
            "responses": {
                str(r.ok): {"description": "Created (JSON)" if r.ok == 201 else "OK (JSON)"},
                **{
                    code: {
                        "description": text,
                        "content": {"application/json": {"schema": error_ref}},
                    }
                    for code, text in _ERRORS.items()
                },
            },
        }
        if r.body is not None:
            op["requestBody"] = {
                "required": r.body.__name__ == "SubmitTask",
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}
                    }
                },
            }
        paths.setdefault(prefix + r.path, {})[r.method.lower()] = op
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
