"""SwarmStateManager on a real Redis: versions, snapshots, checkpoints, verification, AOF."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.errors import BadRequest, CorruptState, NotFound, VersionConflict
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager

from .helpers import hash_fields


@pytest.fixture
def manager(scripts: Scripts, keys: Keys) -> SwarmStateManager:
    return SwarmStateManager(scripts, keys, ttl_ms=86_400_000, snapshots_kept=10)


async def test_save_load_versions_checksum_and_ttl(
    manager: SwarmStateManager, client: Client, keys: Keys
) -> None:
    assert await manager.load_state("s1") is None
    assert await manager.save_state("s1", {"swarm": "s1", "n": 1}) == 1
    assert await manager.save_state("s1", {"swarm": "s1", "n": 2}, expected_version=1) == 2
    record = await manager.load_state("s1")
    assert record is not None
    assert (record.version, record.data) == (2, {"swarm": "s1", "n": 2})
    stored = await hash_fields(client, keys.state("s1"))
    assert stored[b"checksum"].decode() == record.checksum and len(record.checksum) == 64
    assert 0 < await client.pttl(keys.state("s1")) <= 86_400_000


async def test_stale_version_is_a_typed_conflict(manager: SwarmStateManager) -> None:
    await manager.save_state("s1", {"n": 1})
    await manager.save_state("s1", {"n": 2}, expected_version=1)
    with pytest.raises(VersionConflict):
        await manager.save_state("s1", {"n": 3}, expected_version=1)
    with pytest.raises(VersionConflict):
        await manager.save_state("s2", {"n": 1}, expected_version=4)
    record = await manager.load_state("s1")
    assert record is not None and record.data == {"n": 2}


async def test_update_state_retries_conflicts_so_no_increment_is_lost(
    manager: SwarmStateManager,
) -> None:
    def bump(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "n": data.get("n", 0) + 1}

    versions = await asyncio.gather(*[manager.update_state("s1", bump) for _ in range(25)])
    assert sorted(versions) == list(range(1, 26))
    record = await manager.load_state("s1")
    assert record is not None and record.data["n"] == 25


async def test_data_that_breaks_the_layout_is_refused(manager: SwarmStateManager) -> None:
    with pytest.raises(BadRequest):
        await manager.save_state("s1", {"workers": "not a map"})
    with pytest.raises(BadRequest):
        await manager.save_state("s1", {"swarm": "another"})
    assert await manager.load_state("s1") is None


async def test_snapshot_pruning_keeps_exactly_ten_newest_first(
    manager: SwarmStateManager, client: Client, keys: Keys
) -> None:
    assert await manager.create_snapshot("s1") == 0  # no state: nothing taken
    for n in range(1, 16):
        await manager.save_state("s1", {"n": n})
        assert await manager.create_snapshot("s1", f"l{n}") == n
    snaps = await manager.list_snapshots("s1")
    assert await client.llen(keys.snapshots("s1")) == 10
    assert [s["version"] for s in snaps] == list(range(15, 5, -1))
    assert all(s["integrity"] == "ok" for s in snaps)
    newest = await manager.load_snapshot("s1")
    assert newest.data == {"n": 15} and newest.label == "l15"
    oldest = await manager.load_snapshot("s1", snaps[-1]["id"])
    assert oldest.data == {"n": 6}
    with pytest.raises(NotFound):
        await manager.load_snapshot("s1", "nope")


async def test_restore_snapshot_makes_it_current_with_a_new_version(
    manager: SwarmStateManager,
) -> None:
    await manager.save_state("s1", {"n": 1})
    await manager.create_snapshot("s1")
    snap_id = (await manager.list_snapshots("s1"))[0]["id"]
    await manager.save_state("s1", {"n": 2})
    assert await manager.restore_snapshot("s1", snap_id) == 3
    record = await manager.load_state("s1")
    assert record is not None and record.data == {"n": 1}


async def test_checkpoints_are_named_replaced_bounded_and_restorable(
    scripts: Scripts, keys: Keys, client: Client
) -> None:
    manager = SwarmStateManager(scripts, keys, checkpoints_kept=3)
    for n in range(1, 6):
        await manager.save_state("s1", {"n": n})
        await manager.create_checkpoint("s1", f"c{n}")
    await manager.save_state("s1", {"n": 6})
    await manager.create_checkpoint("s1", "c4")  # same name: the older c4 goes
    names = [(c["label"], c["version"]) for c in await manager.list_checkpoints("s1")]
    assert names == [("c4", 6), ("c5", 5), ("c3", 3)]
    assert (await manager.load_checkpoint("s1", "c3")).data == {"n": 3}
    await manager.restore_checkpoint("s1", "c5")
    record = await manager.load_state("s1")
    assert record is not None and record.data == {"n": 5}


async def test_automatic_snapshots_skip_unchanged_state_and_other_managers_rounds(
    manager: SwarmStateManager, client: Client, keys: Keys
) -> None:
    await client.sadd(keys.swarm_status("active"), "s1", "s2")
    await manager.save_state("s1", {"n": 1})
    await manager.save_state("s2", {"n": 1})
    assert await manager.snapshot_round(300_000) == 2
    assert await manager.snapshot_round(300_000) == 0  # nothing changed
    await manager.save_state("s1", {"n": 2})
    # changed, but an automatic snapshot was taken less than an interval ago (another manager)
    assert await manager.snapshot_round(300_000) == 0
    assert await manager.snapshot_round(1) == 1


async def test_corrupt_state_is_detected_quarantined_and_versions_keep_growing(
    manager: SwarmStateManager, client: Client, keys: Keys
) -> None:
    await manager.save_state("s1", {"n": 1})
    await manager.save_state("s1", {"n": 2})
    await client.hset(keys.state("s1"), "data", b'{"n": 3}')  # checksum no longer matches
    with pytest.raises(CorruptState) as info:
        await manager.load_state("s1")
    assert info.value.reason == "checksum mismatch" and info.value.kind == "state"
    assert not await manager.quarantine_state("s1", 1, "checksum mismatch")  # not that version
    assert await manager.quarantine_state("s1", 2, "checksum mismatch")
    assert await manager.load_state("s1") is None
    quarantined = await manager.list_quarantine("s1")
    assert [(q["kind"], q["id"], q["reason"]) for q in quarantined] == [
        ("state", "v2", "checksum mismatch")
    ]
    with pytest.raises(VersionConflict):  # a writer that read version 2 before the move
        await manager.save_state("s1", {"n": 9}, expected_version=0)
    assert await manager.update_state("s1", lambda d: {"n": 4}) == 3


async def test_corrupt_snapshot_reported_by_list_and_load(
    manager: SwarmStateManager, client: Client, keys: Keys
) -> None:
    await manager.save_state("s1", {"n": 1})
    await manager.create_snapshot("s1")
    await client.lset(keys.snapshots("s1"), 0, "{not json")
    snaps = await manager.list_snapshots("s1")
    assert snaps[0]["integrity"].startswith("bad encoding")
    with pytest.raises(CorruptState):
        await manager.load_snapshot("s1")


async def test_state_survives_a_redis_restart_with_aof(own_redis: RedisServer) -> None:
    settings = Settings(
        redis_url=own_redis.url, redis_url_explicit=True, namespace="aof", reconnect_timeout_s=20.0
    )
    keys = Keys(settings.namespace)
    client = connect(settings)
    try:
        manager = SwarmStateManager(Scripts(client, reconnect_timeout_s=20.0), keys)
        await manager.save_state("s1", {"swarm": "s1", "workers": {}, "n": 1})
        await manager.create_snapshot("s1", "before")
        await manager.create_checkpoint("s1", "cp")
        await manager.save_state("s1", {"swarm": "s1", "workers": {}, "n": 2}, expected_version=1)
        own_redis.restart()  # SIGKILL, then start on the same dir: only the AOF is left
        record = await manager.load_state("s1")
        assert record is not None and record.version == 2 and record.data["n"] == 2
        assert await client.pttl(keys.state("s1")) > 0
        assert (await manager.load_snapshot("s1")).data["n"] == 1
        assert (await manager.load_checkpoint("s1", "cp")).data["n"] == 1
        # scripts are gone from the restarted server: calls reload them by themselves
        assert await manager.save_state("s1", {"n": 3}, expected_version=2) == 3
    finally:
        await client.aclose()


async def test_update_state_moves_a_corrupt_state_aside_and_carries_on(
    manager: SwarmStateManager, client: Client, keys: Keys
) -> None:
    await manager.save_state("s1", {"n": 1})
    await client.hset(keys.state("s1"), "checksum", "0" * 64)
    seen: list[dict[str, Any]] = []

    def bump(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data)
        return {"n": data.get("n", 0) + 1}

    assert await manager.update_state("s1", bump) == 2
    assert seen == [{}]
    assert [q["reason"] for q in await manager.list_quarantine("s1")] == ["checksum mismatch"]
