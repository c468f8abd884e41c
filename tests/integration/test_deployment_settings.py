"""Deployment-wide timings are stored once and agreed by every process (issue 14, item 10)."""

from __future__ import annotations

import pytest

from multiswarm.config import from_env
from multiswarm.connection import Client
from multiswarm.deployment import agree, current, store_timings
from multiswarm.errors import ConfigError
from multiswarm.redis_server import RedisServer


async def test_first_process_stores_later_ones_adopt(
    redis_server: RedisServer, client: Client, namespace: str
) -> None:
    first = from_env(
        {
            "MULTISWARM_REDIS_URL": redis_server.url,
            "MULTISWARM_NAMESPACE": namespace,
            "HEARTBEAT_INTERVAL": "3000",
        }
    )
    assert first.explicit == {"heartbeat_timeout_ms"}
    agreed = await agree(client, first)
    assert agreed.heartbeat_timeout_ms == 3000
    # a process started on the defaults adopts the deployment's heartbeat instead of its own
    later = from_env({"MULTISWARM_REDIS_URL": redis_server.url, "MULTISWARM_NAMESPACE": namespace})
    assert later.heartbeat_timeout_ms == 30_000
    assert (await agree(client, later)).heartbeat_timeout_ms == 3000
    stored = await current(client, later)
    assert stored is not None and stored.heartbeat_timeout_ms == 3000 and stored.set_by


async def test_explicit_conflict_refuses_naming_both_values(
    redis_server: RedisServer, client: Client, namespace: str
) -> None:
    base = {"MULTISWARM_REDIS_URL": redis_server.url, "MULTISWARM_NAMESPACE": namespace}
    await agree(client, from_env({**base, "HEARTBEAT_INTERVAL": "3000"}))
    with pytest.raises(ConfigError) as info:
        await agree(client, from_env({**base, "HEARTBEAT_INTERVAL": "30000"}))
    line = str(info.value)
    assert "HEARTBEAT_INTERVAL=30000 (deployment: 3000)" in line and "config set" in line
    # the same value given explicitly is no conflict
    assert (await agree(client, from_env({**base, "HEARTBEAT_INTERVAL": "3000"}))).lease_ms


async def test_store_changes_what_later_processes_adopt(
    redis_server: RedisServer, client: Client, namespace: str
) -> None:
    s = from_env({"MULTISWARM_REDIS_URL": redis_server.url, "MULTISWARM_NAMESPACE": namespace})
    assert await current(client, s) is None
    record = await store_timings(client, s, lease_ms=5000)
    assert record.lease_ms == 5000 and record.heartbeat_timeout_ms == 30_000
    assert (await agree(client, s)).lease_ms == 5000
    with pytest.raises(ConfigError, match="not a deployment timing"):
        await store_timings(client, s, namespace_ms=1)
    with pytest.raises(ConfigError, match="from 1 ms to 604800000 ms"):
        await store_timings(client, s, lease_ms=0)
    stored = await current(client, s)
    assert stored is not None and stored.lease_ms == 5000  # refused changes changed nothing
