"""Token checks, bind policy and the error mapping, as pure functions (no server)."""

from __future__ import annotations

import msgspec
import pytest

from multiswarm.errors import (
    BadRequest,
    ConfigError,
    IllegalTransition,
    InvalidIdError,
    NotFound,
    RedisUnavailable,
    ReplicaAckError,
)
from multiswarm.http import openapi
from multiswarm.http.auth import (
    AuthError,
    Tokens,
    authorize,
    check_bind,
    check_origin,
    is_loopback,
    role_of,
    tokens_from_env,
)
from multiswarm.http.replies import BodyTimeout, SubmitTask, decode_body, error_status
from multiswarm.http.routes import API, MAX_LIMIT

ADMIN = "a" * 20
READ = "r" * 20
BOTH = Tokens(admin=ADMIN, read=READ)


@pytest.mark.parametrize(
    ("authorization", "cookie", "role"),
    [
        (f"Bearer {ADMIN}", None, "admin"),
        (f"bearer {READ}", None, "read"),
        (None, ADMIN, "admin"),
        (None, READ, "read"),
        (f"Bearer {ADMIN}x", None, None),
        (f"Bearer {ADMIN[:-1]}", None, None),
        (f"Basic {ADMIN}", None, None),
        ("Bearer ", None, None),
        (None, None, None),
        (None, "", None),
        # a wrong bearer token is not rescued by a right cookie: the header is what was sent
        ("Bearer wrong-token-wrong-token", ADMIN, None),
        # another scheme (a proxy's Basic auth, found in the HTTP review) leaves the cookie in
        # force: the dashboard works behind it
        ("Basic abc", ADMIN, "admin"),
        ("Basic abc", READ, "read"),
        ("Basic abc", "wrong-token-wrong-token", None),
        ("Bearer", ADMIN, None),
    ],
)
def test_role_of_credentials(authorization: str | None, cookie: str | None, role: str) -> None:
    assert role_of(BOTH, authorization, cookie) == role


def test_an_unset_token_never_matches_the_empty_one() -> None:
    only_admin = Tokens(admin=ADMIN)
    assert role_of(only_admin, "Bearer ", None) is None
    assert role_of(only_admin, None, "") is None
    assert role_of(only_admin, f"Bearer {ADMIN}", None) == "admin"


def test_no_token_configured_is_open() -> None:
    assert role_of(Tokens(), None, None) == "open"
    assert authorize(Tokens(), "POST", None, None) == "open"


def test_read_token_may_get_but_not_post() -> None:
    assert authorize(BOTH, "GET", f"Bearer {READ}", None) == "read"
    with pytest.raises(AuthError) as e:
        authorize(BOTH, "POST", f"Bearer {READ}", None)
    assert e.value.status == 403
    with pytest.raises(AuthError) as e:
        authorize(BOTH, "GET", None, None)
    assert e.value.status == 401
    assert authorize(BOTH, "POST", f"Bearer {ADMIN}", None) == "admin"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_open_api_refuses_a_routable_address() -> None:
    assert "loopback" in check_bind("127.0.0.1", Tokens())
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        check_bind("0.0.0.0", Tokens())
    assert "bearer tokens required" in check_bind("0.0.0.0", Tokens(read=READ))


def test_tokens_from_env_rejects_short_or_equal_tokens() -> None:
    env = {"MULTISWARM_API_TOKEN": ADMIN, "MULTISWARM_API_READ_TOKEN": READ}
    assert tokens_from_env(env) == BOTH
    assert tokens_from_env({}) == Tokens()
    with pytest.raises(ConfigError, match="shorter"):
        tokens_from_env({"MULTISWARM_API_TOKEN": "short"})
    with pytest.raises(ConfigError, match="differ"):
        tokens_from_env({"MULTISWARM_API_TOKEN": ADMIN, "MULTISWARM_API_READ_TOKEN": ADMIN})


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (AuthError(401, "x"), 401, "unauthorized"),
        (AuthError(403, "x"), 403, "forbidden"),
        (NotFound("NOT_FOUND", "task t"), 404, "not_found"),
        (BadRequest("BAD_REQUEST", "x"), 400, "bad_request"),
        (InvalidIdError("bad id"), 400, "bad_request"),
        (IllegalTransition("ILLEGAL_TRANSITION", "x"), 409, "conflict"),
        (RedisUnavailable("down"), 503, "unavailable"),
        # made on the master only: a status a client retries, not a 500 (found in review)
        (ReplicaAckError("0 of 1 replicas acknowledged"), 503, "not_replicated"),
        (BodyTimeout("body not received within 10 s"), 408, "timeout"),
        (RuntimeError("bug"), 500, "internal"),
    ],
)
def test_error_status(exc: BaseException, status: int, code: str) -> None:
    got_status, body = error_status(exc)
    assert (got_status, body.error) == (status, code)
    assert body.detail


def test_bodies_are_decoded_strictly() -> None:
    assert decode_body(b'{"handler": "m:f"}', SubmitTask).handler == "m:f"
    for raw in (b"{not json", b"[]", b'{"payload": 1}', b'{"handler": "m:f", "bogus": 1}'):
        with pytest.raises(BadRequest, match="malformed body"):
            decode_body(raw, SubmitTask)
    assert isinstance(msgspec.json.decode(b"{}"), dict)


OPEN = Tokens()
OWN = "127.0.0.1:8700"


@pytest.mark.parametrize(
    ("method", "host", "origin"),
    [
        ("GET", OWN, None),
        ("GET", "localhost:8700", "http://evil.example"),  # a read's reply is not shared (CORS)
        ("HEAD", "[::1]:8700", None),
        ("GET", "127.9.9.9", None),
        ("GET", "LOCALHOST:1", None),
        ("POST", OWN, None),  # curl, scripts: no Origin
        ("POST", OWN, f"http://{OWN}"),  # the dashboard
        ("POST", "localhost", "http://LOCALHOST:80"),
        ("POST", None, None),  # HTTP/1.0 without Host: no browser sends that
    ],
)
def test_the_open_api_takes(method: str, host: str | None, origin: str | None) -> None:
    check_origin(OPEN, method, "http", host, origin)


@pytest.mark.parametrize(
    ("method", "host", "origin"),
    [
        ("GET", "evil.example", None),  # DNS rebinding: the page's own name
        ("GET", "evil.example:8700", None),
        ("GET", "127.0.0.1.nip.io:8700", None),
        ("GET", "0.0.0.0:8700", None),
        ("GET", "[::1", None),
        ("GET", "", None),
        ("POST", OWN, "http://evil.example"),  # a cross-site form
        ("POST", OWN, "null"),  # a sandboxed frame or a file
        ("POST", OWN, "http://127.0.0.1:8701"),  # another local port is another site
        ("POST", OWN, f"https://{OWN}"),
        ("DELETE", OWN, "http://evil.example"),
        ("POST", None, "http://evil.example"),
    ],
)
def test_the_open_api_refuses(method: str, host: str | None, origin: str | None) -> None:
    """Found in the HTTP review: any page in the operator's browser could write through the
    open loopback API (CSRF) or read it after rebinding its name to 127.0.0.1."""
    with pytest.raises(AuthError) as e:
        check_origin(OPEN, method, "http", host, origin)
    assert e.value.status == 403
    assert error_status(e.value)[1].error == "forbidden"


def test_with_tokens_host_and_origin_are_not_checked() -> None:
    check_origin(BOTH, "POST", "http", "api.example.com", "http://evil.example")


def test_openapi_documents_limit_and_recovery_sources_as_served() -> None:
    """Found in the HTTP review: ``limit`` was a string without bounds, the recovery source
    ``snapshot:<id>`` (which the planner refuses), and no 503 said ``not_replicated``."""
    doc = openapi.document(API, "/api/v1")
    limits = [
        p["schema"]
        for ops in doc["paths"].values()
        for op in ops.values()
        for p in op["parameters"]
        if p["name"] == "limit"
    ]
    assert len(limits) == 2
    assert all(s == {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT} for s in limits)
    assert MAX_LIMIT == 1000
    source = doc["components"]["schemas"]["ApplyRecovery"]["description"]
    assert "snapshot:<id>" not in source and "``snapshot``" in source
    responses = doc["paths"]["/api/v1/tasks"]["post"]["responses"]
    assert "not_replicated" in responses["503"]["description"]
    assert "408" in responses
