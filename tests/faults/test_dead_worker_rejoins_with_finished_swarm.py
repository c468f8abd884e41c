"""A worker declared dead could not rejoin when one of its swarms had finished meanwhile.

host_swarms.lua was all-or-nothing and refused (ILLEGAL_TRANSITION) as soon as one swarm was
completed or failed, so the worker could host none of the others again. Now finished swarms are
skipped and reported with their status (the worker stops serving them); the rest are hosted.
"""

from __future__ import annotations

from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from tests.integration.helpers import host


async def test_rejoin_skips_finished_swarms(scripts: Scripts, keys: Keys) -> None:
    registry = SwarmRegistry(scripts, keys)
    await host(scripts, keys, "w1", ("s1", []), ("s2", []), ("s3", []))
    await scripts.client.zadd(keys.heartbeats, {"w1": 0})  # it stalled past the timeout
    assert await registry.reap_workers(60_000) == ["w1"]
    await registry.transition("s1", "failed")  # an operator gave up on s1 meanwhile
    await registry.transition("s3", "failed")
    assert not await registry.heartbeat("w1", {}, 0.0)  # told to register again

    before = await registry.host_swarms(
        "w1", {"host": "test"}, [swarm_spec("s1"), swarm_spec("s2"), swarm_spec("s3")]
    )
    assert before == {"s1": "failed", "s2": "interrupted", "s3": "failed"}
    s1, s2 = await registry.get("s1"), await registry.get("s2")
    assert (s1.status, s1.host_workers) == ("failed", [])
    assert (s2.status, s2.host_workers, s2.recoveries) == ("active", ["w1"], 1)
    assert {w.id: w.swarms for w in await registry.workers()} == {"w1": "s2"}
    assert await registry.heartbeat("w1", {}, 0.0)
