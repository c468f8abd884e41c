"""Where the API may listen: open (no token) on loopback only, anywhere with a token; and the
scrape flag. These need Redis but no running system (health is 503: nobody leads)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from multiswarm.config import Settings
from multiswarm.redis_server import RedisServer

from .conftest import ADMIN, api_command, api_env, start_api

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
