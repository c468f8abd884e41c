"""The swarm state scripts: KEYS are one swarm's state hash, entry lists and quarantine list,
all in the swarm's own hash slot (``<ns>:...:{<swarm>}``, keys.py)."""

from __future__ import annotations

import msgspec

from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner


class Captured(msgspec.Struct, array_like=True, frozen=True):
    """snapshot_state's reply: the state version (0: no state) and whether a copy was taken."""

    version: int
    taken: bool


class Capture(msgspec.Struct, frozen=True, kw_only=True):
    """What snapshot_state is asked to take (its ARGV)."""

    entry_id: str
    kind: str
    label: str
    kept: int
    ttl_ms: int
    replace: bool = False
    min_gap_ms: int = 0
    skip_unchanged: bool = False


SAVE = Script("save_state", int, request_id=True)
SNAPSHOT = Script("snapshot_state", Captured, request_id=True)
QUARANTINE_STATE = Script("quarantine_state", bool, request_id=True)
QUARANTINE_ENTRY = Script("quarantine_entry", bool, request_id=True)


async def save_state(
    scripts: ScriptRunner,
    keys: Keys,
    swarm_id: str,
    *,
    expected: str,
    data: bytes,
    checksum: str,
    ttl_ms: int,
    schema: int,
) -> int:
    """Compare-and-set of the state (``expected`` '' for any version); the new version."""
    return await SAVE(scripts, [keys.state(swarm_id)], [expected, data, checksum, ttl_ms, schema])


async def snapshot_state(
    scripts: ScriptRunner, keys: Keys, swarm_id: str, entry_list: str, capture: Capture
) -> Captured:
    """Copy the state into ``entry_list`` (a snapshots or checkpoints key of the swarm)."""
    return await SNAPSHOT(
        scripts,
        [keys.state(swarm_id), entry_list],
        [
            capture.entry_id,
            capture.kind,
            capture.label,
            capture.kept,
            capture.ttl_ms,
            "1" if capture.replace else "0",
            capture.min_gap_ms,
            "1" if capture.skip_unchanged else "0",
        ],
    )


async def quarantine_state(
    scripts: ScriptRunner,
    keys: Keys,
    swarm_id: str,
    version: str,
    reason: str,
    *,
    kept: int,
    ttl_ms: int,
) -> bool:
    """Move the state aside if it still has ``version``."""
    return await QUARANTINE_STATE(
        scripts,
        [keys.state(swarm_id), keys.quarantine(swarm_id)],
        [version, reason, kept, ttl_ms],
    )


async def quarantine_entry(
    scripts: ScriptRunner,
    keys: Keys,
    swarm_id: str,
    entry_list: str,
    *,
    kind: str,
    raw: bytes | str,
    entry_id: str,
    reason: str,
    kept: int,
    ttl_ms: int,
) -> bool:
    """Move one entry of ``entry_list`` (exactly as read) to the quarantine list."""
    return await QUARANTINE_ENTRY(
        scripts,
        [entry_list, keys.quarantine(swarm_id)],
        [kind, raw, entry_id, reason, kept, ttl_ms],
    )
