"""SwarmStateManager: versioned per-swarm state, snapshots, checkpoints and recovery.

State lives at ``<ns>:state:{<swarm>}`` (its own hash slot per swarm): a hash of ``version``,
``data`` (JSON text), ``checksum`` (hex SHA-256 of ``data``), ``updated_ms`` and ``schema``, saved
by compare-and-set on the version (save_state.lua) with the ``SWARM_TTL``. Snapshots (automatic,
every ``SNAPSHOT_INTERVAL``, taken by the state-manager process) and checkpoints (named, manual)
are bounded lists of copies with the same checksum (snapshot_state.lua trims in the same step).
Everything read back is verified (encoding, checksum, schema); a corrupted entry raises
:class:`~multiswarm.errors.CorruptState` and can be moved to the swarm's quarantine list. Recovery
planning and applying live in :mod:`multiswarm.recovery`; this class exposes them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from multiswarm.connection import with_retry
from multiswarm.errors import (
    BadRequest,
    ConfigError,
    CorruptState,
    MultiswarmError,
    NotFound,
    VersionConflict,
)
from multiswarm.keys import Keys, check_id
from multiswarm.scripts import Scripts

if TYPE_CHECKING:
    from multiswarm.recovery import RecoveryOutcome, RecoveryPlan

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Version of the state document layout (:class:`StateDoc`); entries of another version are
#: rejected as "wrong schema" rather than misread.
SCHEMA_VERSION = 1
#: Recovery sources, in the order recovery tries them.
SOURCE_KINDS = ("state", "checkpoint", "snapshot")
#: Quarantined entries kept per swarm (newest first).
QUARANTINE_KEPT = 50
#: Default confidence at or above which the state-manager process recovers on its own.
DEFAULT_AUTO_RECOVER = 0.75
#: Environment variable overriding :data:`DEFAULT_AUTO_RECOVER` (a number in [0, 1]).
AUTO_RECOVER_ENV = "MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE"
_STATE_FIELDS = ["version", "data", "checksum", "updated_ms", "schema"]


class WorkerEntry(msgspec.Struct, kw_only=True):
    """What one worker records about itself in a swarm's state (worker.py ``_save_progress``).

    Attributes
    ----------
    running:
        Ids of the swarm's tasks the worker was running.
    agents:
        Agent processes the worker runs for the swarm.
    at_ms:
        Wall-clock time of the record, in milliseconds.
    completed, agent_ids:
        Optional: recently completed task ids; the agents' ids.
    """

    running: list[str] = []
    agents: int = 0
    at_ms: int = 0
    completed: list[str] = []
    agent_ids: list[str] = []


class StateDoc(msgspec.Struct, kw_only=True):
    """The fields of state data that recovery reads; other fields pass through untouched."""

    swarm: str = ""
    workers: dict[str, WorkerEntry] = {}


class StateRecord(msgspec.Struct, frozen=True):
    """A decoded, checksum-verified current state."""

    version: int
    data: dict[str, Any]
    updated_ms: int
    checksum: str = ""


class RecoveryPoint(msgspec.Struct, frozen=True, kw_only=True):
    """A verified recovery source: the current state, a checkpoint or a snapshot.

    Attributes
    ----------
    kind:
        ``state`` | ``checkpoint`` | ``snapshot``.
    id:
        ``v<version>`` for the state, else the entry id.
    label:
        Snapshot label (``auto``, ``manual``...) or checkpoint name; ``current`` for the state.
    version:
        State version the data had when saved.
    captured_ms:
        When the data was saved (server clock, ms).
    taken_ms:
        When the snapshot or checkpoint was taken (``captured_ms`` for the state).
    data, doc:
        The data, and its fields recovery reads.
    text, checksum:
        The data as stored, and its SHA-256.
    """

    kind: str
    id: str
    label: str
    version: int
    captured_ms: int
    taken_ms: int
    data: dict[str, Any]
    doc: StateDoc
    text: bytes
    checksum: str


class _Entry(msgspec.Struct):
    """A snapshot or checkpoint as stored (snapshot_state.lua)."""

    id: str
    kind: str
    label: str
    version: int
    data: str
    checksum: str
    state_updated_ms: int
    taken_ms: int
    schema: int = SCHEMA_VERSION


_entry_decoder = msgspec.json.Decoder(_Entry)


def checksum(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (the integrity check stored next to every state copy)."""
    return hashlib.sha256(data).hexdigest()


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def verify_data(
    swarm_id: str, kind: str, entry_id: str, raw: bytes, digest: str, schema: int
) -> tuple[dict[str, Any], StateDoc]:
    """Decode and check state data; returns ``(data, doc)``.

    Checked in this order, the first failure naming the reason: JSON encoding, checksum, schema
    (layout version, a JSON object, the known fields' types, the swarm it names).

    Raises
    ------
    CorruptState
        With reason ``bad encoding: ...``, ``checksum mismatch`` or ``wrong schema: ...``.
    """
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise CorruptState(kind, entry_id, f"bad encoding: {e}") from e
    if checksum(raw) != digest:
        raise CorruptState(kind, entry_id, "checksum mismatch")
    if schema != SCHEMA_VERSION:
        raise CorruptState(kind, entry_id, f"wrong schema: layout version {schema}")
    if not isinstance(data, dict):
        raise CorruptState(kind, entry_id, f"wrong schema: {type(data).__name__}, not an object")
    try:
        doc = msgspec.convert(data, StateDoc)
    except msgspec.ValidationError as e:
        raise CorruptState(kind, entry_id, f"wrong schema: {e}") from e
    if doc.swarm and doc.swarm != swarm_id:
        raise CorruptState(kind, entry_id, f"wrong schema: state of swarm {doc.swarm!r}")
    return data, doc


def verify_state(swarm_id: str, fields: list[Any]) -> RecoveryPoint | None:
    """The current state from its hash fields (``HMGET`` of version, data, checksum, updated_ms,
    schema); None when there is no data. Raises CorruptState."""
    version, raw, digest, updated, schema = fields
    if version is None or raw is None:
        return None
    try:
        v = int(version)
        updated_ms = int(updated or 0)
        layout = int(schema) if schema not in (None, b"", "") else SCHEMA_VERSION
    except ValueError as e:
        raise CorruptState("state", f"v{_text(version)}", f"bad encoding: {e}") from e
    raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode()
    data, doc = verify_data(swarm_id, "state", f"v{v}", raw_bytes, _text(digest), layout)
    return RecoveryPoint(kind="state", id=f"v{v}", label="current", version=v,
                         captured_ms=updated_ms, taken_ms=updated_ms, data=data, doc=doc,
                         text=raw_bytes, checksum=_text(digest))


def verify_entry(swarm_id: str, kind: str, raw: bytes | str) -> RecoveryPoint:
    """A snapshot or checkpoint from its stored JSON. Raises CorruptState."""
    try:
        entry = _entry_decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise CorruptState(kind, "", f"wrong schema: {e}") from e
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise CorruptState(kind, "", f"bad encoding: {e}") from e
    text = entry.data.encode()
    data, doc = verify_data(swarm_id, kind, entry.id, text, entry.checksum, entry.schema)
    return RecoveryPoint(kind=kind, id=entry.id, label=entry.label, version=entry.version,
                         captured_ms=entry.state_updated_ms, taken_ms=entry.taken_ms, data=data,
                         doc=doc, text=text, checksum=entry.checksum)


def _entry_id(raw: bytes | str) -> str:
    """Best-effort id of a stored entry that failed verification (for the quarantine record)."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return ""
    return str(value.get("id", "")) if isinstance(value, dict) else ""


def auto_recover_threshold(env: dict[str, str] | None = None) -> float:
    """Confidence at or above which the state manager recovers by itself (default 0.75).

    Raises ConfigError when ``MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE`` is not in [0, 1].
    """
    raw = (os.environ if env is None else env).get(AUTO_RECOVER_ENV, "")
    if raw == "":
        return DEFAULT_AUTO_RECOVER
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{AUTO_RECOVER_ENV}={raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{AUTO_RECOVER_ENV}={value} is not in [0, 1]")
    return value


class SwarmStateManager:
    """Versioned state of swarms, their snapshots and checkpoints, and their recovery.

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
        The state-manager process (:meth:`run`) applies plans at or above this confidence and
        leaves the rest to an operator; default :func:`auto_recover_threshold`.
    """

    def __init__(
        self,
        scripts: Scripts,
        keys: Keys,
        *,
        ttl_ms: int = 86_400_000,
        snapshots_kept: int = 10,
        checkpoints_kept: int = 10,
        auto_recover_min_confidence: float | None = None,
    ) -> None:
        if ttl_ms < 1 or snapshots_kept < 1 or checkpoints_kept < 1:
            raise ConfigError("ttl_ms, snapshots_kept and checkpoints_kept must be positive")
        self.scripts = scripts
        self.keys = keys
        self.client = scripts.client
        self.ttl_ms = ttl_ms
        self.snapshots_kept = snapshots_kept
        self.checkpoints_kept = checkpoints_kept
        self._auto_recover = auto_recover_min_confidence

    @property
    def auto_recover_min_confidence(self) -> float:
        """The auto-recovery threshold; the environment is read on first use only, so clients
        that never recover (workers) are not affected by it."""
        if self._auto_recover is None:
            self._auto_recover = auto_recover_threshold()
        return self._auto_recover

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
        return int(await self.scripts.call(
            "save_state", [self.keys.state(swarm_id)],
            [expected, raw, checksum(raw), self.ttl_ms, SCHEMA_VERSION]))

    async def _read_state(self, swarm_id: str) -> tuple[int, RecoveryPoint | None]:
        key = self.keys.state(swarm_id)
        fields = await self.read(lambda: self.client.hmget(key, _STATE_FIELDS))
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
        return StateRecord(version=point.version, data=point.data, updated_ms=point.captured_ms,
                           checksum=point.checksum)

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
        key = self.keys.state(swarm_id)
        for attempt in range(attempts):
            try:
                version, current = await self._read_state(swarm_id)
            except CorruptState as e:
                stored = await self.read(lambda: self.client.hget(key, "version"))
                if stored is not None and await self.quarantine_state(
                        swarm_id, _text(stored), e.reason):
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
        raise ValueError(f"unknown recovery point kind {kind!r}")

    async def _capture(
        self, swarm_id: str, kind: str, label: str, *, replace: bool = False,
        min_gap_ms: int = 0, skip_unchanged: bool = False,
    ) -> tuple[int, bool]:
        kept = self.snapshots_kept if kind == "snapshot" else self.checkpoints_kept
        reply = await self.scripts.call(
            "snapshot_state", [self.keys.state(swarm_id), self._list_key(kind, swarm_id)],
            [uuid.uuid4().hex[:16], kind, label, kept, self.ttl_ms, "1" if replace else "0",
             min_gap_ms, "1" if skip_unchanged else "0"])
        return int(reply[0]), bool(int(reply[1]))

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
        version, _ = await self._capture(swarm_id, "checkpoint", check_id(name, "checkpoint"),
                                         replace=True)
        return version

    async def _points(self, swarm_id: str, kind: str) -> list[dict[str, Any]]:
        raws = await self.read(
            lambda: self.client.lrange(self._list_key(kind, swarm_id), 0, -1))
        out = []
        for raw in raws:
            try:
                p = verify_entry(swarm_id, kind, raw)
                out.append({"id": p.id, "label": p.label, "version": p.version,
                            "state_updated_ms": p.captured_ms, "taken_ms": p.taken_ms,
                            "bytes": len(p.text), "integrity": "ok"})
            except CorruptState as e:
                out.append({"id": e.entry_id, "label": "", "version": 0, "state_updated_ms": 0,
                            "taken_ms": 0, "bytes": len(raw), "integrity": e.reason})
        return out

    async def list_snapshots(self, swarm_id: str) -> list[dict[str, Any]]:
        """Snapshots, newest first: id, label, version, state_updated_ms, taken_ms, bytes and
        ``integrity`` (``ok`` or why verification failed). Data is not returned."""
        return await self._points(swarm_id, "snapshot")

    async def list_checkpoints(self, swarm_id: str) -> list[dict[str, Any]]:
        """Checkpoints, newest first (fields as :meth:`list_snapshots`; ``label`` is the name)."""
        return await self._points(swarm_id, "checkpoint")

    async def _load_point(self, swarm_id: str, kind: str, match: str | None,
                          by_label: bool) -> RecoveryPoint:
        raws = await self.read(
            lambda: self.client.lrange(self._list_key(kind, swarm_id), 0, -1))
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
        return bool(int(await self.scripts.call(
            "quarantine_state", [self.keys.state(swarm_id), self.keys.quarantine(swarm_id)],
            [str(version), reason, QUARANTINE_KEPT, self.ttl_ms])))

    async def quarantine_entry(
        self, swarm_id: str, kind: str, raw: bytes | str, reason: str
    ) -> bool:
        """Move one snapshot or checkpoint entry (exactly as read) to quarantine. Returns False
        when it is no longer in its list."""
        return bool(int(await self.scripts.call(
            "quarantine_entry",
            [self._list_key(kind, swarm_id), self.keys.quarantine(swarm_id)],
            [kind, raw, _entry_id(raw), reason, QUARANTINE_KEPT, self.ttl_ms])))

    async def list_quarantine(self, swarm_id: str) -> list[dict[str, Any]]:
        """Quarantined entries, newest first: kind, id, reason, at_ms (stored bytes omitted)."""
        out = []
        for raw in await self.read(
                lambda: self.client.lrange(self.keys.quarantine(swarm_id), 0, -1)):
            # the bytes of a corrupt state need not be UTF-8: decode leniently to show the rest
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            try:
                entry = msgspec.json.decode(text)
            except (msgspec.DecodeError, UnicodeDecodeError):
                out.append({"kind": "?", "id": "", "reason": "unreadable quarantine record",
                            "at_ms": 0})
                continue
            out.append({k: entry.get(k) for k in ("kind", "id", "reason", "at_ms")})
        return out

    # -- recovery (multiswarm.recovery) ---------------------------------------------------------
    async def discover_interrupted_swarms(self) -> list[str]:
        """Swarms to recover: ``interrupted``, and ``recovering`` ones whose plan was begun but
        not finished (a crash between the steps of an apply)."""
        from multiswarm.recovery import SwarmRecovery
        return await SwarmRecovery(self).discover()

    async def plan_recovery(self, swarm_id: str, source: str | None = None) -> RecoveryPlan:
        """A dry-run plan: nothing is written (corrupted entries are reported, not moved).

        Raises NotFound, NotInterrupted, NoRecoverySource (``source`` given and not valid).
        """
        from multiswarm.recovery import SwarmRecovery
        return await SwarmRecovery(self).plan(swarm_id, source=source)

    async def recover_swarm(
        self, swarm_id: str, source: str | None = None, min_confidence: float | None = None
    ) -> RecoveryOutcome:
        """Plan (quarantining corrupted entries) and apply; see :mod:`multiswarm.recovery`.

        Raises NotFound, NoRecoverySource, LowConfidence.
        """
        from multiswarm.recovery import SwarmRecovery
        return await SwarmRecovery(self).recover(swarm_id, source=source,
                                                 min_confidence=min_confidence)

    # -- the state-manager process -------------------------------------------------------------
    async def snapshot_round(self, interval_ms: int) -> int:
        """Automatic snapshots of every ``active`` swarm; returns how many were taken.

        A swarm is skipped when its newest snapshot already holds the current version, or when an
        automatic one is younger than 90 % of ``interval_ms`` (another state-manager process
        took it), so several managers do not multiply snapshots.
        """
        ids = sorted(_text(m) for m in
                     await self.read(
                         lambda: self.client.smembers(self.keys.swarm_status("active"))))
        taken = 0
        for sid in ids:
            _, did = await self._capture(sid, "snapshot", "auto",
                                         min_gap_ms=int(interval_ms * 0.9), skip_unchanged=True)
            taken += did
        return taken

    async def run(
        self, stop: asyncio.Event, interval_ms: int, *, recovery_poll_ms: int = 5_000
    ) -> None:
        """State-manager process until ``stop``: automatic snapshots of active swarms every
        ``interval_ms`` (``SNAPSHOT_INTERVAL``), and every ``recovery_poll_ms`` a recovery round
        that applies plans at or above ``auto_recover_min_confidence`` and logs the others for an
        operator (``multiswarm-cli recover list``). A swarm left to an operator is planned again
        only after ``interval_ms``, so many of them do not cost a full planning pass per poll."""
        from multiswarm.recovery import SwarmRecovery
        recovery = SwarmRecovery(self, actor=f"state-manager-{os.getpid()}")
        last_snapshot = float("-inf")
        left_at: dict[str, float] = {}  # swarm id -> when it was last left to an operator
        while not stop.is_set():
            now = time.monotonic()
            if now - last_snapshot >= interval_ms / 1000:
                last_snapshot = now
                try:
                    taken = await self.snapshot_round(interval_ms)
                    await recovery.prune()
                    log.info("automatic snapshots: %d taken", taken)
                except MultiswarmError as e:
                    log.warning("snapshot round failed: %s", e)
            left_at = {s: t for s, t in left_at.items() if now - t < interval_ms / 1000}
            try:
                outcomes, left = await recovery.auto_recover(self.auto_recover_min_confidence,
                                                             skip=left_at.keys())
                for o in outcomes:
                    log.warning("recovered %s from %s (confidence %.2f): %s, %d tasks re-queued",
                                o.swarm, o.source, o.confidence, o.outcome, len(o.requeued))
                for p in left:
                    log.warning("%s left for an operator: best source %s, confidence %.2f "
                                "< %.2f", p.swarm, p.source, p.confidence,
                                self.auto_recover_min_confidence)
                    left_at[p.swarm] = now
            except MultiswarmError as e:
                log.warning("recovery round failed: %s", e)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(),
                                       timeout=min(recovery_poll_ms, interval_ms) / 1000)
