"""Contract tests run on both fakeredis (fast, pure logic) and a real redis-server: the swarm
state machine, every (from, to) pair, against the table of DESIGN.md written out here."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import fakeredis
import pytest

from multiswarm.connection import Client
from multiswarm.errors import IllegalTransition
from multiswarm.keys import SWARM_STATUSES, Keys
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts

ALLOWED = {
    ("initializing", "active"),
    ("initializing", "failed"),
    ("initializing", "interrupted"),
    ("active", "completed"),
    ("active", "failed"),
    ("active", "interrupted"),
    ("interrupted", "recovering"),
    ("interrupted", "failed"),
    ("recovering", "active"),
    ("recovering", "failed"),
    ("recovering", "interrupted"),
}


@pytest.fixture(params=["fakeredis", "redis-server"])
async def registry(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[SwarmRegistry]:
    client: Client
    if request.param == "fakeredis":
        client = fakeredis.FakeAsyncRedis()
    else:
        from multiswarm.connection import connect

        client = connect(request.getfixturevalue("settings"))
    yield SwarmRegistry(Scripts(client), Keys(namespace))
    await client.aclose()


async def _put_in(registry: SwarmRegistry, swarm_id: str, status: str) -> None:
    """Walk a new swarm to ``status`` by allowed steps only."""
    path = {
        "initializing": [],
        "active": ["active"],
        "failed": ["failed"],
        "interrupted": ["interrupted"],
        "recovering": ["interrupted", "recovering"],
        "completed": ["active", "completed"],
    }[status]
    await registry.register_swarm(swarm_spec(swarm_id))
    for step in path:
        await registry.transition(swarm_id, step)


async def test_every_transition_pair(registry: SwarmRegistry) -> None:
    for i, (src, dst) in enumerate(itertools.product(SWARM_STATUSES, SWARM_STATUSES)):
        sid = f"s{i}"
        await _put_in(registry, sid, src)
        if src == dst:
            assert await registry.transition(sid, dst) == src  # idempotent no-op
        elif (src, dst) in ALLOWED:
            assert await registry.transition(sid, dst) == src
            assert sid in await registry.swarm_ids(dst)
            assert sid not in await registry.swarm_ids(src)
        else:
            with pytest.raises(IllegalTransition):
                await registry.transition(sid, dst)
            assert (await registry.get(sid)).status == src
            assert sid in await registry.swarm_ids(src)
            assert sid not in await registry.swarm_ids(dst)
