"""A wrong Redis URL ends in one typed line naming what is wrong, quickly, never a traceback
or a client repr (issue 14, item 13), and outages are logged from the first failure (item 11)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from multiswarm.config import from_env
from multiswarm.connection import connect, verify, with_retry
from multiswarm.errors import ConfigError, RedisUnavailable
from multiswarm.redis_server import RedisServer, free_port


@pytest.fixture
def protected() -> Iterator[RedisServer]:
    with RedisServer(requirepass="right-password") as server:
        yield server


async def _verify(url: str, timeout_s: float = 1.0) -> None:
    client = connect(from_env(redis_url=url))
    try:
        await verify(client, url, timeout_s)
    finally:
        await client.aclose()


async def test_database_out_of_range_is_a_config_error(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigError, match="no such database") as info:
        await _verify(redis_server.url.rsplit("/", 1)[0] + "/99")
    assert "\n" not in str(info.value)


async def test_cluster_url_at_a_single_server_says_so(redis_server: RedisServer) -> None:
    url = "redis+cluster://" + redis_server.url.split("://", 1)[1].rsplit("/", 1)[0]
    with pytest.raises(ConfigError, match=r"not in cluster mode.*use redis://"):
        await _verify(url)


async def test_unreachable_sentinel_is_one_short_line() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()}/mymaster"
    with pytest.raises(RedisUnavailable) as info:
        await _verify(url, timeout_s=0.5)
    line = str(info.value)
    assert "mymaster" in line and "ConnectionPool" not in line and len(line) < 300


async def test_wrong_password_fails_at_once_without_retrying(
    protected: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = protected.url_for(password="wrong-password")
    caplog.set_level(logging.WARNING, logger="multiswarm.connection")
    with pytest.raises(ConfigError, match="refused the credentials") as info:
        await _verify(url, timeout_s=30)
    # a refusal is an answer: not one retry (each would log "Redis unreachable (attempt N")
    assert not [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert "wrong-password" not in str(info.value)


async def test_outage_logged_from_the_first_failure(caplog: pytest.LogCaptureFixture) -> None:
    client = connect(from_env(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    caplog.set_level(logging.WARNING, logger="multiswarm.connection")
    try:
        with pytest.raises(RedisUnavailable):
            await with_retry(client.ping, 0.5)
    finally:
        await client.aclose()
    lines = [r.getMessage() for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert lines and lines[0].startswith("Redis unreachable (attempt 1,")
