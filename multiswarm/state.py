"""SwarmStateManager: versioned per-swarm state and snapshots.

State lives at ``<ns>:state:{<swarm>}`` (its own hash slot per swarm) as JSON text with a SHA-256
checksum, saved by compare-and-set on its version (save_state.lua). The state-manager process
takes automatic snapshots of active swarms every ``SNAPSHOT_INTERVAL`` and keeps the newest
``snapshots_kept`` (snapshot_state.lua trims in the same step).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from multiswarm.errors import MessageDecodeError, MultiswarmError, VersionConflict
from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts

log = logging.getLogger(__name__)


class StateRecord(msgspec.Struct, frozen=True):
    """A decoded, checksum-verified state: ``version`` and ``data``."""

    version: int
    data: dict[str, Any]
    updated_ms: int


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SwarmStateManager:
    """Versioned state of swarms, and their snapshots.

    Parameters
    ----------
    ttl_ms:
        ``SWARM_TTL``: state expires this long after its last save (24 h).
    snapshots_kept:
        Snapshots retained per swarm (10).
    """

    def __init__(
        self, scripts: Scripts, keys: Keys, *, ttl_ms: int = 86_400_000, snapshots_kept: int = 10
    ) -> None:
        self.scripts = scripts
        self.keys = keys
        self.client = scripts.client
        self.ttl_ms = ttl_ms
        self.snapshots_kept = snapshots_kept

    async def save_state(
        self, swarm_id: str, data: dict[str, Any], expected_version: int | None = None
    ) -> int:
        """Store ``data``; returns the new version.

        Raises
        ------
        VersionConflict
            ``expected_version`` is given and is not the stored version.
        """
        raw = msgspec.json.encode(data)
        expected = "" if expected_version is None else str(expected_version)
        return int(await self.scripts.call(
            "save_state", [self.keys.state(swarm_id)],
            [expected, raw, checksum(raw), self.ttl_ms]))

    async def load_state(self, swarm_id: str) -> StateRecord | None:
        """The current state, or None. Raises MessageDecodeError when corrupt."""
        fields = await self.client.hmget(
            self.keys.state(swarm_id), ["version", "data", "checksum", "updated_ms"])
        if fields[0] is None:
            return None
        version, raw, digest, updated = fields
        raw = raw or b""
        if checksum(raw) != (digest.decode() if isinstance(digest, bytes) else digest):
            raise MessageDecodeError(f"state of {swarm_id}: checksum mismatch")
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError as e:
            raise MessageDecodeError(f"state of {swarm_id}: {e}") from e
        if not isinstance(data, dict):
            raise MessageDecodeError(f"state of {swarm_id}: not an object")
        return StateRecord(version=int(version), data=data, updated_ms=int(updated or 0))

    async def update_state(
        self, swarm_id: str, fn: Callable[[dict[str, Any]], dict[str, Any]], attempts: int = 20
    ) -> int:
        """Read-modify-write with optimistic concurrency; retries ``fn`` on conflict."""
        for _ in range(attempts):
            current = await self.load_state(swarm_id)
            data = fn(dict(current.data) if current else {})
            try:
                return await self.save_state(
                    swarm_id, data, expected_version=current.version if current else 0)
            except VersionConflict:
                await asyncio.sleep(0.01)
        raise VersionConflict("VERSION_CONFLICT", f"state of {swarm_id}: {attempts} conflicts")

    async def create_snapshot(self, swarm_id: str, label: str = "manual") -> int:
        """Copy the current state into the snapshot list; returns the version captured (0: none)."""
        return int(await self.scripts.call(
            "snapshot_state", [self.keys.state(swarm_id), self.keys.snapshots(swarm_id)],
            [label, self.snapshots_kept, self.ttl_ms]))

    async def list_snapshots(self, swarm_id: str) -> list[dict[str, Any]]:
        raws = await self.client.lrange(self.keys.snapshots(swarm_id), 0, -1)
        out = []
        for raw in raws:
            try:
                entry = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                continue
            entry.pop("data", None)
            out.append(entry)
        return out

    async def run(self, stop: asyncio.Event, interval_ms: int) -> None:
        """State-manager process: automatic snapshots of active swarms every ``interval_ms``."""
        registry = SwarmRegistry(self.scripts, self.keys)
        while not stop.is_set():
            try:
                for sid in await registry.swarm_ids("active"):
                    await self.create_snapshot(sid, "auto")
            except MultiswarmError as e:
                log.warning("snapshot round failed: %s", e)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_ms / 1000)
            except asyncio.TimeoutError:
                pass
