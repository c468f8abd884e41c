"""SwarmStateManager: versioned swarm state, snapshots, checkpoints.

State lives at ``<ns>:state:{<swarm>}`` (its own hash slot per swarm): a hash of ``version``,
``data`` (JSON text), ``checksum`` (hex SHA-256 of ``data``), ``updated_ms`` and ``schema``, saved
by compare-and-set on the version (save_state.lua) with the ``SWARM_TTL``. Snapshots (automatic,
every ``SNAPSHOT_INTERVAL``, taken by the state-manager process) and checkpoints (named, manual)
are bounded lists of copies with the same checksum (snapshot_state.lua trims in the same step).
Everything read back is verified by :mod:`multiswarm.state_codec` (encoding, checksum, schema); a
corrupted entry raises :class:`~multiswarm.errors.CorruptState` and can be moved to the swarm's
quarantine list. Recovery planning and applying live in :mod:`multiswarm.recovery`
(:class:`~multiswarm.recovery.SwarmRecovery` over this manager); the state-manager process loop
is :func:`multiswarm.services.run_state_manager`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import redis.exceptions

from multiswarm.config import DEFAULT_AUTO_RECOVER_MIN_CONFIDENCE
from multiswarm.connection import with_retry
from multiswarm.errors import (
    BadRequest,
    ConfigError,
    CorruptState,
    InvalidArgumentError,
    MultiswarmError,
    NotFound,
    VersionConflict,
)
from multiswarm.keys import Keys, check_id
from multiswarm.ops import state as ops
from multiswarm.ops.script import decode
from multiswarm.ops.state import Capture
from multiswarm.scripts import Scripts
from multiswarm.state_codec import (
    SCHEMA_VERSION,
    STATE_FIELDS,
    RecoveryPoint,
    StateRecord,
    checksum,
    entry_id,
    text,
    verify_data,
    verify_entry,
    verify_state,
)

__all__ = ["QUARANTINE_KEPT", "StateRecord", "SwarmStateManager"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Quarantined entries kept per swarm (newest first).
QUARANTINE_KEPT = 50


class SwarmStateManager:
    """Versioned state of swarms, their snapshots and checkpoints, and the rounds of the
    state-manager process (:meth:`snapshot_round`; the loop with its recovery rounds is
    :func:`multiswarm.services.run_state_manager`).

    Parameters
    ----------
    scripts:
        Bound scripts of a client.
    keys:
        Key names of the namespace.
    ttl_ms:
        ``SWARM_TTL``: state, snapshots, checkpoints, quarantine and recovery log expire this
        long after their last write (24 h).
    snapshots_kept:
        Snapshots retained per swarm (10); the oldest is trimmed in the step that adds one.
    checkpoints_kept:
        Checkpoints retained per swarm (10).
    auto_recover_min_confidence:
        The state-manager process (:func:`~multiswarm.services.run_state_manager`) applies
        plans at or above this confidence and leaves the rest to an operator
        (``Settings.auto_recover_min_confidence``, 0.75).
    """

    def __init__(
        self,
        scripts: Scripts,
        keys: Keys,
        *,
        ttl_ms: int = 86_400_000,
        snapshots_kept: int = 10,
        checkpoints_kept: int = 10,
        auto_recover_min_confidence: float = DEFAULT_AUTO_RECOVER_MIN_CONFIDENCE,
    ) -> None:
        if ttl_ms < 1 or snapshots_kept < 1 or checkpoints_kept < 1:
            raise ConfigError("ttl_ms, snapshots_kept and checkpoints_kept must be positive")
        self.scripts = scripts
        self.keys = keys
        self.client = scripts.client
        self.ttl_ms = ttl_ms
        self.snapshots_kept = snapshots_kept
        self.checkpoints_kept = checkpoints_kept
        self.auto_recover_min_confidence = auto_recover_min_confidence

    async def read(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a read command, retrying connection errors like script calls do (a Redis restart
        or fail-over), then RedisUnavailable."""
        return await with_retry(fn, self.scripts.reconnect_timeout_s)

    # -- current state -------------------------------------------------------------------------
    async def save_state(
        self, swarm_id: str, data: dict[str, Any], expected_version: int | None = None
    ) -> int:
        """Store ``data`` as the swarm's state; returns the new version.

        Parameters
        ----------
        expected_version:
            Compare-and-set: the version the caller read (0 for "no state"); None saves whatever
            is stored.

        Raises
        ------
        VersionConflict
            ``expected_version`` is not the stored version.
        BadRequest
            ``data`` does not fit the state layout (:class:`StateDoc`) or names another swarm.
        """
        check_id(swarm_id, "swarm id")
        raw = msgspec.json.encode(data)
        try:
            verify_data(swarm_id, "state", "new", raw, checksum(raw), SCHEMA_VERSION)
        except CorruptState as e:
            raise BadRequest("BAD_REQUEST", f"state of {swarm_id}: {e.reason}") from e
        expected = "" if expected_version is None else str(expected_version)
        return await ops.save_state(
            self.scripts,
            self.keys,
            swarm_id,
            expected=expected,
            data=raw,
            checksum=checksum(raw),
            ttl_ms=self.ttl_ms,
            schema=SCHEMA_VERSION,
        )

    async def _read_state(self, swarm_id: str) -> tuple[int, RecoveryPoint | None]:
        key = self.keys.state(swarm_id)
        fields = await self.read(lambda: self.client.hmget(key, STATE_FIELDS))
        try:
            version = int(fields[0] or 0)
        except ValueError:
            version = 0
        return version, verify_state(swarm_id, fields)

    async def load_state(self, swarm_id: str) -> StateRecord | None:
        """The current state, or None when there is none.

        Raises
        ------
        CorruptState
            The stored state fails verification (a :class:`MessageDecodeError`).
        """
        _, point = await self._read_state(swarm_id)
        if point is None:
            return None
        return StateRecord(
            version=point.version,
            data=point.data,
            updated_ms=point.captured_ms,
            checksum=point.checksum,
        )

    async def update_state(
        self, swarm_id: str, fn: Callable[[dict[str, Any]], dict[str, Any]], attempts: int = 20
    ) -> int:
        """Read-modify-write with optimistic concurrency: ``fn(data) -> data``, retried on
        conflict with a short random backoff. Returns the new version.

        A stored state that fails verification is moved to quarantine (with its reason) and
        ``fn`` gets ``{}``: a live writer, such as a worker saving its progress, must not stall on
        a bad copy, and the bad copy stays available for inspection.

        Raises
        ------
        VersionConflict
            Still conflicting after ``attempts`` tries.
        """
        for attempt in range(attempts):
            try:
                version, current = await self._read_state(swarm_id)
            except CorruptState as e:
                # the version examined (a state saved since, by an operator's restore or
                # another writer, is another version: quarantine_state.lua leaves it)
                examined = e.entry_id[1:] if e.entry_id.startswith("v") else ""
                if examined and await self.quarantine_state(swarm_id, examined, e.reason):
                    log.warning("state of %s quarantined: %s", swarm_id, e.reason)
                continue
            data = fn(dict(current.data) if current else {})
            try:
                return await self.save_state(swarm_id, data, expected_version=version)
            except VersionConflict:
                # jitter so contending writers do not collide again in lockstep
                await asyncio.sleep(random.uniform(0.002, 0.01 * (attempt + 1)))
        raise VersionConflict("VERSION_CONFLICT", f"state of {swarm_id}: {attempts} conflicts")

    # -- snapshots and checkpoints -------------------------------------------------------------
    def _list_key(self, kind: str, swarm_id: str) -> str:
        if kind == "snapshot":
            return self.keys.snapshots(swarm_id)
        if kind == "checkpoint":
            return self.keys.checkpoints(swarm_id)
        raise InvalidArgumentError(f"unknown recovery point kind {kind!r}")

    async def _capture(
        self,
        swarm_id: str,
        kind: str,
        label: str,
        *,
        replace: bool = False,
        min_gap_ms: int = 0,
        skip_unchanged: bool = False,
    ) -> tuple[int, bool]:
        kept = self.snapshots_kept if kind == "snapshot" else self.checkpoints_kept
        capture = Capture(
            entry_id=uuid.uuid4().hex[:16],
            kind=kind,
            label=label,
            kept=kept,
            ttl_ms=self.ttl_ms,
            replace=replace,
            min_gap_ms=min_gap_ms,
            skip_unchanged=skip_unchanged,
        )
        got = await ops.snapshot_state(
            self.scripts, self.keys, swarm_id, self._list_key(kind, swarm_id), capture
        )
        return got.version, got.taken

    async def create_snapshot(self, swarm_id: str, label: str = "manual") -> int:
        """Copy the current state into the snapshot list (the oldest beyond
        ``snapshots_kept`` is dropped in the same step). Returns the version captured, 0 when
        there is no state."""
        version, _ = await self._capture(swarm_id, "snapshot", label)
        return version

    async def create_checkpoint(self, swarm_id: str, name: str) -> int:
        """A named recovery point: a copy of the current state that replaces an older checkpoint
        of the same name. Returns the version captured, 0 when there is no state.

        Raises InvalidIdError when ``name`` is not an id.
        """
        version, _ = await self._capture(
            swarm_id, "checkpoint", check_id(name, "checkpoint"), replace=True
        )
        return version

    async def _points(self, swarm_id: str, kind: str) -> list[dict[str, Any]]:
        raws = await self.read(lambda: self.client.lrange(self._list_key(kind, swarm_id), 0, -1))
        out = []
        for raw in raws:
            try:
                p = verify_entry(swarm_id, kind, raw)
                out.append(
                    {
                        "id": p.id,
                        "label": p.label,
                        "version": p.version,
                        "state_updated_ms": p.captured_ms,
                        "taken_ms": p.taken_ms,
                        "bytes": len(p.text),
                        "integrity": "ok",
                    }
                )
            except CorruptState as e:
                out.append(
                    {
                        "id": e.entry_id,
                        "label": "",
                        "version": 0,
                        "state_updated_ms": 0,
                        "taken_ms": 0,
                        "bytes": len(raw),
                        "integrity": e.reason,
                    }
                )
        return out

    async def list_snapshots(self, swarm_id: str) -> list[dict[str, Any]]:
        """Snapshots, newest first: id, label, version, state_updated_ms, taken_ms, bytes and
        ``integrity`` (``ok`` or why verification failed). Data is not returned."""
        return await self._points(swarm_id, "snapshot")

    async def list_checkpoints(self, swarm_id: str) -> list[dict[str, Any]]:
        """Checkpoints, newest first (fields as :meth:`list_snapshots`; ``label`` is the name)."""
        return await self._points(swarm_id, "checkpoint")

    async def _load_point(
        self, swarm_id: str, kind: str, match: str | None, by_label: bool
    ) -> RecoveryPoint:
        raws = await self.read(lambda: self.client.lrange(self._list_key(kind, swarm_id), 0, -1))
        for raw in raws:
            try:
                point = verify_entry(swarm_id, kind, raw)
            except CorruptState as e:
                if match is None or e.entry_id == match:
                    raise
                continue
            if match is None or (point.label if by_label else point.id) == match:
                return point
        raise NotFound("NOT_FOUND", f"no {kind} {match or ''} of {swarm_id}".replace("  ", " "))

    async def load_snapshot(self, swarm_id: str, snapshot_id: str | None = None) -> RecoveryPoint:
        """The snapshot ``snapshot_id`` (default: the newest), verified.

        Raises
        ------
        NotFound
            No such snapshot.
        CorruptState
            It fails verification.
        """
        return await self._load_point(swarm_id, "snapshot", snapshot_id, by_label=False)

    async def load_checkpoint(self, swarm_id: str, name: str | None = None) -> RecoveryPoint:
        """The checkpoint named ``name`` (default: the newest), verified. Raises NotFound,
        CorruptState."""
        return await self._load_point(swarm_id, "checkpoint", name, by_label=True)

    async def _restore(self, swarm_id: str, point: RecoveryPoint) -> int:
        # A restore replaces whatever is stored, so no expected version; writers holding an
        # older version get VersionConflict and re-read the restored data.
        return await self.save_state(swarm_id, point.data)

    async def restore_snapshot(self, swarm_id: str, snapshot_id: str | None = None) -> int:
        """Make a snapshot (default: the newest) the current state. Returns the new version.
        Raises NotFound, CorruptState."""
        return await self._restore(swarm_id, await self.load_snapshot(swarm_id, snapshot_id))

    async def restore_checkpoint(self, swarm_id: str, name: str | None = None) -> int:
        """Make a checkpoint (default: the newest) the current state. Returns the new version.
        Raises NotFound, CorruptState."""
        return await self._restore(swarm_id, await self.load_checkpoint(swarm_id, name))

    # -- quarantine ----------------------------------------------------------------------------
    async def quarantine_state(self, swarm_id: str, version: int | str, reason: str) -> bool:
        """Move the current state aside if it still has ``version``; keeps the version counter.
        Returns False when another version is stored now (nothing moved)."""
        return await ops.quarantine_state(
            self.scripts,
            self.keys,
            swarm_id,
            str(version),
            reason,
            kept=QUARANTINE_KEPT,
            ttl_ms=self.ttl_ms,
        )

    async def quarantine_entry(
        self, swarm_id: str, kind: str, raw: bytes | str, reason: str
    ) -> bool:
        """Move one snapshot or checkpoint entry (exactly as read) to quarantine. Returns False
        when it is no longer in its list."""
        return await ops.quarantine_entry(
            self.scripts,
            self.keys,
            swarm_id,
            self._list_key(kind, swarm_id),
            kind=kind,
            raw=raw,
            entry_id=entry_id(raw),
            reason=reason,
            kept=QUARANTINE_KEPT,
            ttl_ms=self.ttl_ms,
        )

    async def list_quarantine(self, swarm_id: str) -> list[dict[str, Any]]:
        """Quarantined entries, newest first: kind, id, reason, at_ms (stored bytes omitted)."""
        out = []
        for raw in await self.read(
            lambda: self.client.lrange(self.keys.quarantine(swarm_id), 0, -1)
        ):
            # the bytes of a corrupt state need not be UTF-8: decode leniently to show the rest
            try:
                entry = msgspec.json.decode(text(raw))
            except (msgspec.DecodeError, UnicodeDecodeError):
                entry = None
            if not isinstance(entry, dict):  # (hand-edited: not JSON, or not an object)
                out.append(
                    {"kind": "?", "id": "", "reason": "unreadable quarantine record", "at_ms": 0}
                )
                continue
            out.append({k: entry.get(k) for k in ("kind", "id", "reason", "at_ms")})
        return out

    # -- the state-manager process -------------------------------------------------------------
    async def snapshot_round(self, interval_ms: int) -> int:
        """Automatic snapshots of every ``active`` swarm; returns how many were taken.

        A swarm is skipped when its newest snapshot already holds the current version, or when an
        automatic one is younger than 90 % of ``interval_ms`` (another state-manager process
        took it), so several managers do not multiply snapshots.
        """
        active = await self.read(lambda: self.client.smembers(self.keys.swarm_status("active")))
        ids = sorted(decode(active, list[str]))
        taken = 0
        for sid in ids:
            try:
                _, did = await self._capture(
                    sid, "snapshot", "auto", min_gap_ms=int(interval_ms * 0.9), skip_unchanged=True
                )
            except (MultiswarmError, redis.exceptions.ResponseError) as e:
                # one swarm's bad keys must not cost the swarms after it their snapshots
                log.warning("no snapshot of %s: %s", sid, e)
                continue
            taken += did
        return taken
