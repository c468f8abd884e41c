"""Where the API may listen: open (no token) on loopback only, anywhere with a token; and the
scrape flag. These need Redis but no running system (health is 503: nobody leads)."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import pytest

from multiswarm.api import Multiswarm
from multiswarm.config import Settings
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry, swarm_spec

from .conftest import ADMIN, NOOP, api_command, api_env, start_api

pytestmark = pytest.mark.slow


def test_without_a_token_it_is_open_on_loopback_and_says_so(settings: Settings) -> None:
    api = start_api(settings)
    try:
        assert api.url.startswith("http://127.0.0.1:")
        assert "auth: none" in api.output[-1] and "loopback" in api.output[-1]
        with httpx.Client(base_url=api.url) as http:
            assert http.get("/api/v1/whoami").json() == {"role": "open", "auth_required": False}
            assert http.post("/api/v1/swarms/nobody/pause").status_code == 404  # not 401
            health = http.get("/api/v1/health")
            assert health.status_code == 503
            assert health.json()["ok"] is False and "leader" in health.json()["reason"]
    finally:
        assert api.stop() == 0


def test_without_a_token_it_refuses_a_routable_address(settings: Settings) -> None:
    done = subprocess.run(
        api_command(settings, "--host", "0.0.0.0", "--port", "0"),
        env=api_env(settings, {}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2  # bad input (was 1, found in review), one line
    assert "refusing to listen on 0.0.0.0 without a token" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "multiswarm api:" not in done.stdout


def test_with_a_token_it_listens_anywhere_and_scrape_may_be_open(settings: Settings) -> None:
    api = start_api(
        settings, "--host", "0.0.0.0", "--open-scrape", tokens={"MULTISWARM_API_TOKEN": ADMIN}
    )
    try:
        assert api.url.startswith("http://0.0.0.0:")
        local = api.url.replace("0.0.0.0", "127.0.0.1")
        with httpx.Client(base_url=local) as http:
            assert http.get("/api/v1/status").status_code == 401
            assert http.get("/metrics").status_code == 200
            assert http.get("/healthz").status_code == 503  # open, and honest: nobody leads
            authed = http.get("/api/v1/status", headers={"Authorization": f"Bearer {ADMIN}"})
            assert authed.status_code == 200
            # with a token the Host and Origin rules of the open API do not apply
            anywhere = http.get(
                "/api/v1/status",
                headers={"Authorization": f"Bearer {ADMIN}", "Host": "api.example:8700"},
            )
            assert anywhere.status_code == 200
            index = http.get("/")
            assert index.status_code == 200 and "<title>multiswarm</title>" in index.text
            # scripts and styles from this origin only: no CDN, no inline code
            assert index.headers["content-security-policy"].startswith("default-src 'self'")
            assert http.get("/static/app.js").status_code == 200
    finally:
        assert api.stop() == 0


def test_redis_down_is_503_unavailable(own_redis: RedisServer, settings: Settings) -> None:
    api = start_api(settings.replace(redis_url=own_redis.url))
    try:
        with httpx.Client(base_url=api.url, timeout=30) as http:
            assert http.get("/api/v1/status").status_code == 200
            own_redis.kill()
            resp = http.get("/api/v1/status")
            assert resp.status_code == 503 and resp.json()["error"] == "unavailable", resp.text
            health = http.get("/api/v1/health")
            assert health.status_code == 503
            assert health.json()["reason"].startswith("redis unavailable"), health.text
            own_redis.start()
            assert http.get("/api/v1/status").status_code == 200  # and back, no restart
    finally:
        assert api.stop() == 0


async def _host_swarm(settings: Settings, swarm_id: str) -> None:
    async with await Multiswarm.connect(settings=settings) as ms:
        registry = SwarmRegistry(ms.scripts, ms.keys)
        await registry.host_swarms("ghost", {"host": "test"}, [swarm_spec(swarm_id, ["g"])])


def test_the_open_api_refuses_other_sites_and_rebound_names(settings: Settings) -> None:
    """Found in the HTTP review: a page open in the operator's browser could pause a swarm or
    submit a task through the open loopback API with a plain form (no preflight), and read
    every reply after rebinding its DNS name to 127.0.0.1."""
    asyncio.run(_host_swarm(settings, "alpha"))
    api = start_api(settings)
    try:
        own = api.url  # http://127.0.0.1:port
        port = own.rsplit(":", 1)[1]
        evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        with httpx.Client(base_url=own) as http:
            form = '{"handler":"' + NOOP + '","name":"="}'
            for path, body in (("/api/v1/swarms/alpha/pause", ""), ("/api/v1/tasks", form)):
                resp = http.post(path, content=body, headers=evil)
                assert resp.status_code == 403, resp.text
                assert resp.json()["error"] == "forbidden" and "origin" in resp.json()["detail"]
            assert http.get("/api/v1/swarms/alpha").json()["paused"] is False
            assert http.get("/api/v1/tasks").json() == []
            for host in ("evil.example", f"evil.example:{port}", "10.0.0.5", "127.0.0.1.evil"):
                for path in ("/api/v1/status", "/", "/metrics"):
                    resp = http.get(path, headers={"Host": host})
                    assert resp.status_code == 403, (host, path, resp.text)
                    assert resp.json()["error"] == "forbidden"
            # loopback names, with or without a port, and the API's own origin still work
            for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
                assert http.get("/api/v1/status", headers={"Host": host}).status_code == 200
            same = http.post("/api/v1/swarms/alpha/pause", headers={"Origin": own})
            assert same.status_code == 200 and same.json()["paused"] is True, same.text
            other_port = http.post(
                "/api/v1/swarms/alpha/resume", headers={"Origin": "http://127.0.0.1:1"}
            )
            assert other_port.status_code == 403, other_port.text
            assert http.post("/api/v1/swarms/alpha/resume").status_code == 200  # no Origin: curl
    finally:
        assert api.stop() == 0


def test_a_write_too_few_replicas_acknowledged_is_503_not_replicated(
    settings: Settings,
) -> None:
    """Found in the HTTP review: with ``MULTISWARM_WAIT_REPLICAS`` and no replica a submission
    answered 500 ``internal`` although the task was made, so a client retrying on 503 gave up
    on a request that had succeeded."""
    wait = {"MULTISWARM_WAIT_REPLICAS": "1", "MULTISWARM_WAIT_TIMEOUT_MS": "200"}
    api = start_api(settings, tokens=wait)
    try:
        with httpx.Client(base_url=api.url, timeout=30) as http:
            resp = http.post("/api/v1/tasks", json={"handler": NOOP, "id": "ra1"})
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"] == "not_replicated", resp.text
            assert http.get("/api/v1/tasks/ra1").json()["status"] == "ready"
            again = http.post("/api/v1/tasks", json={"handler": NOOP, "id": "ra1"})
            assert again.status_code in (201, 503), again.text  # a retry is safe
    finally:
        assert api.stop() == 0


@pytest.mark.parametrize(("trusted", "secure"), [("10.9.9.9", False), ("*", True)])
def test_the_cookie_is_secure_behind_a_tls_proxy_it_is_told_to_believe(
    settings: Settings, trusted: str, secure: bool
) -> None:
    """uvicorn believes ``X-Forwarded-Proto`` only from 127.0.0.1 by default, so behind a TLS
    proxy on another host the scheme stayed http and the dashboard's cookie, which holds the
    token, was not marked Secure, though docs/security.md said it was (found in session 21's
    HTTP review). ``--forwarded-allow-ips`` names the proxy (decision 149)."""
    api = start_api(
        settings, "--forwarded-allow-ips", trusted, tokens={"MULTISWARM_API_TOKEN": ADMIN}
    )
    try:
        with httpx.Client(base_url=api.url) as http:
            reply = http.post(
                "/login", json={"token": ADMIN}, headers={"X-Forwarded-Proto": "https"}
            )
            assert reply.status_code == 200, reply.text
            cookie = reply.headers["set-cookie"]
            assert ("; secure" in cookie.lower()) is secure, cookie
    finally:
        assert api.stop() == 0
