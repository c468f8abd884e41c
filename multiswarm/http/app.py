"""The ASGI app: the API routes behind the token check, ``/metrics``, ``/healthz``, the OpenAPI
document, and the dashboard (static files shipped in the package, no CDN).

Auth is checked in one place, :func:`_guard`, around every route but the dashboard's own files
and ``POST /login`` (which checks the token it is given before setting the cookie). An open API
(no token) also refuses, for every path, a non-loopback ``Host`` and a write from another origin
(:class:`_OpenGuard`, :func:`multiswarm.http.auth.check_origin`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from multiswarm.api import Multiswarm
from multiswarm.errors import MultiswarmError
from multiswarm.http import metrics, openapi
from multiswarm.http.auth import (
    COOKIE,
    AuthError,
    Role,
    Tokens,
    authorize,
    check_origin,
    role_of,
)
from multiswarm.http.replies import (
    Whoami,
    decode_body,
    error_reply,
    http_error,
    read_body,
    reply,
)
from multiswarm.http.routes import API, Handler, health

log = logging.getLogger(__name__)

#: The dashboard's files (index.html, app.js, app.css), shipped as package data.
STATIC = Path(__file__).resolve().parent / "static"
#: Prefix of the JSON API.
PREFIX = "/api/v1"

#: Headers of the dashboard page: scripts and styles from this origin only (no inline code, no
#: CDN), never framed by another site, never cached (it holds no data, but stale code would
#: misread new replies).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Endpoint = Callable[[Request], Awaitable[Response]]
Inner = Callable[[Request, Role], Awaitable[Response]]


class Login(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /login``: the token the dashboard asked for once."""

    token: str


class _OpenGuard:
    """ASGI middleware: :func:`check_origin` on every HTTP request before any route (a 403 JSON
    error when it refuses); nothing to check when tokens are required."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.tokens.required:
            headers = Headers(scope=scope)
            try:
                check_origin(
                    self.tokens,
                    scope["method"],
                    scope.get("scheme", "http"),
                    headers.get("host"),
                    headers.get("origin"),
                )
            except AuthError as e:
                await error_reply(e)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _guard(tokens: Tokens, inner: Inner, public: bool = False) -> Endpoint:
    """``inner`` behind the token check, every error turned into the JSON error reply."""

    async def endpoint(req: Request) -> Response:
        try:
            role: Role = "open"
            if not public:
                role = authorize(
                    tokens, req.method, req.headers.get("authorization"), req.cookies.get(COOKIE)
                )
            return await inner(req, role)
        except Exception as e:  # every error becomes the documented JSON reply
            if not isinstance(e, MultiswarmError):  # a bug: keep its traceback for the report
                log.error("%s %s failed", req.method, req.url.path, exc_info=e)
            return error_reply(e)

    return endpoint


def create_app(ms: Multiswarm, tokens: Tokens) -> Starlette:
    """The operations app over one facade.

    Parameters
    ----------
    ms:
        The connected facade; the app never closes it (its owner does).
    tokens:
        Configured tokens (:func:`multiswarm.http.auth.tokens_from_env`).
    """

    def api_route(method: str, path: str, fn: Handler) -> Route:
        async def inner(req: Request, _role: Role) -> Response:
            return await fn(ms, req)

        return Route(PREFIX + path, _guard(tokens, inner), methods=[method])

    async def whoami(req: Request, role: Role) -> Response:
        return reply(Whoami(role, tokens.required))

    document = openapi.document(API, PREFIX)  # the routes are fixed: built once

    async def doc(req: Request, _role: Role) -> Response:
        return reply(document)

    async def scrape(req: Request, _role: Role) -> Response:
        body = metrics.exposition(await metrics.gather(ms))
        return Response(body, media_type=metrics.CONTENT_TYPE)

    async def healthz(req: Request, _role: Role) -> Response:
        return await health(ms, req)

    async def login(req: Request, _role: Role) -> Response:
        # stripped for the check and for the cookie alike (a pasted token often has a space)
        given = decode_body(await read_body(req), Login).token.strip()
        role = role_of(tokens, f"Bearer {given}", None)
        if role is None:
            raise AuthError(401, "wrong token")
        resp = reply(Whoami(role, tokens.required))
        if tokens.required:
            # HttpOnly: page scripts never read it; Strict: no other site can make us send it
            resp.set_cookie(
                COOKIE,
                given,
                httponly=True,
                samesite="strict",
                path="/",
                secure=req.url.scheme == "https",
            )
        return resp

    async def logout(req: Request, _role: Role) -> Response:
        resp = Response(status_code=204)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    async def index(req: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    scrape_public = tokens.open_scrape
    routes = [
        *(api_route(r.method, r.path, r.handler) for r in API),
        Route(f"{PREFIX}/whoami", _guard(tokens, whoami), methods=["GET"]),
        Route(f"{PREFIX}/openapi.json", _guard(tokens, doc), methods=["GET"]),
        Route("/metrics", _guard(tokens, scrape, public=scrape_public), methods=["GET"]),
        Route("/healthz", _guard(tokens, healthz, public=scrape_public), methods=["GET"]),
        Route("/login", _guard(tokens, login, public=True), methods=["POST"]),
        Route("/logout", _guard(tokens, logout, public=True), methods=["POST"]),
        Route("/", index, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def not_found(req: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return http_error(exc.status_code, exc.detail or "")
        return http_error(500, str(exc))

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found},
        middleware=[Middleware(_OpenGuard, tokens=tokens)],
    )
