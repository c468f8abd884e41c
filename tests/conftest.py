"""Fixtures: private redis-server processes (random port, loopback, temp dir), never :6379.

``redis_server`` is one server per test session; each test gets its own namespace on it, so tests
cannot see each other's keys. Tests that kill or restart Redis take ``own_redis`` (a server of
their own). ``fake_client`` is fakeredis with Lua, for fast unit tests of pure logic only.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer
from multiswarm.scripts import Scripts


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("redis-server") or shutil.which("valkey-server"):
        return
    skip = pytest.mark.skip(reason="no redis-server on PATH (apt-get install redis-server)")
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def numba_cache() -> None:
    """Compile the kernels into Numba's on-disk cache once, before any worker process starts:
    on a fresh clone every worker would otherwise compile them at once (~15 s each)."""
    from multiswarm.placement import warm_up

    warm_up()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server for this test alone: kill it, restart it."""
    with RedisServer(appendonly=True) as server:
        yield server


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(redis_server: RedisServer, namespace: str) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        redis_url_explicit=True,
        namespace=namespace,
        reconnect_timeout_s=10.0,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    c = connect(settings)
    yield c
    await c.aclose()


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


@pytest.fixture
def scripts(client: Client) -> Scripts:
    return Scripts(client, reconnect_timeout_s=10.0)
