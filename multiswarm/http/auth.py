"""Bearer tokens of the operations API: who may read, who may act, and where it may listen.

Two tokens, from the environment so they never show in ``ps``:

``MULTISWARM_API_TOKEN``
    admin: every route.
``MULTISWARM_API_READ_TOKEN``
    read-only: GET routes (and ``/metrics``).

A request presents one as ``Authorization: Bearer <token>`` or, from the dashboard, in the
HttpOnly ``SameSite=Strict`` cookie :data:`COOKIE` that ``POST /login`` sets. Tokens are compared
in constant time (``hmac.compare_digest``) against both configured tokens every time, so the
reply time tells nothing about which one, or which prefix, matched.

With no token configured the API is open, and therefore may listen on loopback only
(:func:`check_bind`): an open API on a routable address would hand pause, cancel and recovery to
anyone on the network. A web page in the operator's browser still reaches loopback, so the open
API also refuses what only such a page sends (:func:`check_origin`): a ``Host`` that is not a
loopback name (DNS rebinding) and a write from another origin (cross-site requests).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from typing import Literal

import msgspec

from multiswarm.errors import ConfigError, MultiswarmError

#: Environment variable of the admin token (every route).
ADMIN_ENV = "MULTISWARM_API_TOKEN"
#: Environment variable of the read-only token (GET routes).
READ_ENV = "MULTISWARM_API_READ_TOKEN"
#: Name of the dashboard's session cookie (holds the token itself, HttpOnly, SameSite=Strict).
COOKIE = "multiswarm_token"
#: Shortest token accepted: anything shorter is guessable over the network.
MIN_TOKEN_CHARS = 16

Role = Literal["admin", "read", "open"]
"""What a request may do: ``admin`` everything, ``read`` GET only, ``open`` everything because
no token is configured (loopback only)."""


class AuthError(MultiswarmError):
    """A request lacks the right token.

    Parameters
    ----------
    status:
        401 (missing or wrong token) or 403 (a read token on a write).
    detail:
        Why, for the JSON error reply.
    """

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(detail)


class Tokens(msgspec.Struct, frozen=True, kw_only=True):
    """The configured tokens ('' when unset) and which routes skip them.

    Attributes
    ----------
    admin:
        Admin token, or ''.
    read:
        Read-only token, or ''.
    open_scrape:
        ``/metrics`` and ``/healthz`` answer without a token (for scrapers and probes).
    """

    admin: str = ""
    read: str = ""
    open_scrape: bool = False

    @property
    def required(self) -> bool:
        """True when at least one token is configured (requests must present one)."""
        return bool(self.admin or self.read)


def tokens_from_env(env: Mapping[str, str] | None = None, open_scrape: bool = False) -> Tokens:
    """The tokens of :data:`ADMIN_ENV` and :data:`READ_ENV`.

    Raises
    ------
    ConfigError
        A token is shorter than :data:`MIN_TOKEN_CHARS`, or both are the same.
    """
    env = os.environ if env is None else env
    admin, read = env.get(ADMIN_ENV, "").strip(), env.get(READ_ENV, "").strip()
    for name, value in ((ADMIN_ENV, admin), (READ_ENV, read)):
        if value and len(value) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{name} is shorter than {MIN_TOKEN_CHARS} characters")
    if admin and admin == read:
        raise ConfigError(f"{ADMIN_ENV} and {READ_ENV} must differ")
    return Tokens(admin=admin, read=read, open_scrape=open_scrape)


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``; False for anything routable or a
    wildcard (``0.0.0.0``, ``::``) or an unresolved name."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: Tokens) -> str:
    """Refuse an open API on a non-loopback address; returns the line to print at start.

    Raises
    ------
    ConfigError
        No token is configured and ``host`` is not a loopback address.
    """
    if tokens.required:
        kinds = [k for k, v in (("admin", tokens.admin), ("read-only", tokens.read)) if v]
        return f"auth: bearer tokens required ({' and '.join(kinds)} configured)"
    if not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a token: set {ADMIN_ENV} "
            f"(and optionally {READ_ENV}), or listen on 127.0.0.1"
        )
    return f"auth: none (no {ADMIN_ENV} set); open to local users only, listening on loopback"


def _host_name(host: str) -> str:
    """The name in a ``Host`` header: ``[::1]:8700`` -> ``::1``, ``localhost:8700`` ->
    ``localhost`` ('' when malformed)."""
    if host.startswith("["):
        name, closed, _ = host[1:].partition("]")
        return name if closed else ""
    return host.partition(":")[0]


def _origin_of(scheme: str, host: str) -> str:
    """``scheme://host[:port]`` lower-cased, without the scheme's default port."""
    scheme, host = scheme.lower(), host.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    if default and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def check_origin(
    tokens: Tokens, method: str, scheme: str, host: str | None, origin: str | None
) -> None:
    """With no token configured, refuse the requests a web page open in the operator's browser
    could make to the loopback API: any whose ``Host`` is not a loopback name (a page that
    rebound its DNS name to 127.0.0.1 sends its own name), and a write (not GET/HEAD) whose
    ``Origin`` is not the API's own (a cross-site form or fetch; the dashboard sends its own).
    With tokens nothing is checked here: a page cannot present the token (the cookie is
    SameSite=Strict).

    Raises
    ------
    AuthError
        403, with the reason.
    """
    if tokens.required:
        return
    if host is not None and not is_loopback(_host_name(host.strip().lower())):
        raise AuthError(
            403,
            f"Host {host!r} refused: without a token the API answers only to localhost, "
            "127.x.x.x and [::1]",
        )
    if origin is not None and method not in ("GET", "HEAD"):
        other_scheme, sep, other_host = origin.strip().partition("://")
        if not sep or _origin_of(other_scheme, other_host) != _origin_of(scheme, host or ""):
            raise AuthError(
                403,
                f"{method} from origin {origin!r} refused: without a token the API takes "
                "writes only from its own pages",
            )


def _matches(given: str, wanted: str) -> bool:
    # compare_digest on bytes of any length; an unset token never matches, not even ''
    return bool(wanted) & hmac.compare_digest(given.encode(), wanted.encode())


def role_of(tokens: Tokens, authorization: str | None, cookie: str | None) -> Role | None:
    """The role of a request's credentials: a bearer token first, else the cookie.

    The cookie counts whenever the ``Authorization`` header carries no Bearer token: a proxy's
    Basic auth in front of the dashboard sends one on every request. A Bearer token that does
    not match is not rescued by the cookie (the header is what was sent).

    Returns None when a token is required and none matches.
    """
    if not tokens.required:
        return "open"
    scheme, _, value = (authorization or "").partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else (cookie or "")
    # both comparisons always run: timing says nothing about which token matched
    admin, read = _matches(given, tokens.admin), _matches(given, tokens.read)
    if admin:
        return "admin"
    return "read" if read else None


def authorize(tokens: Tokens, method: str, authorization: str | None, cookie: str | None) -> Role:
    """The caller's role if it may use ``method``; GET/HEAD need any token, others admin.

    Raises
    ------
    AuthError
        401 without a valid token, 403 for a read token on a write.
    """
    role = role_of(tokens, authorization, cookie)
    if role is None:
        raise AuthError(401, "missing or wrong bearer token")
    if role == "read" and method not in ("GET", "HEAD"):
        raise AuthError(403, "the read-only token cannot change anything")
    return role
