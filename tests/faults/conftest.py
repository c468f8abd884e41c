"""Fault-test fixtures: a server that can be stalled (``DEBUG SLEEP``) and a reply-dropping proxy.

Each test here reproduces one failure mode on a real redis-server (one file per mode, named after
it) and fails if the protection it pins is removed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from multiswarm.redis_server import RedisServer
from tests.faults.proxy import ReplyDroppingProxy


@pytest.fixture
def stallable_redis() -> Iterator[RedisServer]:
    """A private server of this test alone that accepts ``DEBUG SLEEP`` from loopback."""
    with RedisServer(appendonly=True, extra_args=["--enable-debug-command", "local"]) as server:
        yield server


@pytest.fixture
def proxy(stallable_redis: RedisServer) -> Iterator[ReplyDroppingProxy]:
    with ReplyDroppingProxy(stallable_redis.port) as p:
        yield p
