"""The OpenAPI document against the app's real route table (no server, no Redis: the app is
built over a facade it never calls, and only the document route is requested)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import httpx
import msgspec
from starlette.routing import BaseRoute, Mount, Route

from multiswarm.api import Multiswarm
from multiswarm.http.app import PREFIX, Login, create_app
from multiswarm.http.auth import Tokens

ADMIN = "a" * 20
#: What the app serves but the document leaves out on purpose: the dashboard's own files, the
#: page ``/`` and everything under ``/static`` (one entry for the whole mounted directory). They
#: are HTML, JS and CSS for a browser, public (no token), not part of the operations API a client
#: calls; listing ``/static/app.js`` and its siblings would document file names that change with
#: the dashboard.
DASHBOARD = {("GET", "/"), ("*", "/static/{path}")}


def _served(routes: Iterable[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route, mounted routers' routes under their mount's path; a
    mounted app that is not a router (static files) is one ``*`` entry for its whole tree."""
    served: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            if route.routes:
                served |= _served(route.routes, prefix + route.path)
            else:
                served.add(("*", f"{prefix}{route.path}/{{path}}"))
        elif isinstance(route, Route):
            # Starlette answers HEAD for every GET route by itself: not a route of its own
            served |= {(m, prefix + route.path) for m in route.methods or ()} - {
                ("HEAD", prefix + route.path)
            }
        else:  # a websocket route or a new kind: this test must learn to read it
            raise AssertionError(f"unexpected route {route!r}")
    return served


async def _served_document() -> tuple[set[tuple[str, str]], dict[str, Any]]:
    """The app's route table and the document it serves."""
    app = create_app(cast(Multiswarm, object()), Tokens(admin=ADMIN))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        resp = await client.get(
            f"{PREFIX}/openapi.json", headers={"Authorization": f"Bearer {ADMIN}"}
        )
    assert resp.status_code == 200, resp.text
    return _served(app.routes), resp.json()


async def test_openapi_lists_exactly_the_routes_the_app_serves() -> None:
    """Found by session 21's HTTP review: the document omitted whoami, openapi.json, login,
    logout, metrics and healthz although it said it listed exactly the routes served."""
    served, doc = await _served_document()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served >= DASHBOARD  # the exclusions still name real routes
    assert documented == served - DASHBOARD


async def test_openapi_documents_auth_and_bodies_of_the_app_s_own_routes() -> None:
    _, doc = await _served_document()
    paths = doc["paths"]
    login = paths["/login"]["post"]
    assert login["security"] == [] and paths["/logout"]["post"]["security"] == []
    assert login["requestBody"]["required"] is True
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Login"
    }
    # the Login schema is the app's Struct, field for field
    _, wanted = msgspec.json.schema_components([Login])
    assert doc["components"]["schemas"]["Login"] == wanted["Login"]
    assert "401" in login["responses"] and "200" in login["responses"]
    assert set(paths["/logout"]["post"]["responses"]) >= {"204"}
    # a token unless --open-scrape (the empty requirement: none)
    for path in ("/metrics", "/healthz"):
        assert paths[path]["get"]["security"] == [{"bearer": []}, {}]
    for path in (f"{PREFIX}/whoami", f"{PREFIX}/openapi.json"):
        assert "security" not in paths[path]["get"]  # the document's default: a token
        assert "401" in paths[path]["get"]["responses"]
    assert doc["security"] == [{"bearer": []}]
    assert set(paths["/healthz"]["get"]["responses"]) >= {"200", "503"}
    errors = paths[f"{PREFIX}/tasks"]["post"]["responses"]
    assert {"413", "500"} <= set(errors)
