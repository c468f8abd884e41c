"""The stored forms of swarm state and how they are verified (pure: no Redis, no I/O).

A swarm's current state is a hash of ``version``, ``data`` (JSON text), ``checksum`` (hex SHA-256
of ``data``), ``updated_ms`` and ``schema``; snapshots and checkpoints are JSON entries carrying a
copy of ``data`` with the same checksum. Everything read back goes through :func:`verify_state` or
:func:`verify_entry`, which return a :class:`RecoveryPoint` or raise
:class:`~multiswarm.errors.CorruptState` naming the reason. Both :mod:`multiswarm.state` (which
stores) and :mod:`multiswarm.recovery` / :mod:`multiswarm.recovery_plan` (which read and plan)
import this module, so neither needs the other for its data.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import msgspec

from multiswarm.errors import CorruptState

#: Version of the state document layout (:class:`StateDoc`); entries of another version are
#: rejected as "wrong schema" rather than misread.
SCHEMA_VERSION = 1
#: Recovery sources, in the order recovery tries them.
SOURCE_KINDS = ("state", "checkpoint", "snapshot")
#: Fields of the current-state hash, in the order :func:`verify_state` takes them (``HMGET``).
STATE_FIELDS = ["version", "data", "checksum", "updated_ms", "schema"]


#: Most agents a worker may record for one swarm in its state (a state saying more is refused).
MAX_RECORDED_AGENTS = 10_000


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
    #: (bounded: a plan lists an id per agent of a dead worker; a billion hung it)
    agents: Annotated[int, msgspec.Meta(ge=0, le=MAX_RECORDED_AGENTS)] = 0
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


def text(value: bytes | str | None) -> str:
    """A reply field as text (None as ``""``; undecodable bytes replaced, not raised)."""
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
    """The current state from its hash fields (``HMGET`` of :data:`STATE_FIELDS`); None when
    there is no data. Raises CorruptState."""
    version, raw, digest, updated, schema = fields
    if version is None or raw is None:
        return None
    try:
        v = int(version)
        updated_ms = int(updated or 0)
        layout = int(schema) if schema not in (None, b"", "") else SCHEMA_VERSION
    except ValueError as e:
        raise CorruptState("state", f"v{text(version)}", f"bad encoding: {e}") from e
    raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode()
    data, doc = verify_data(swarm_id, "state", f"v{v}", raw_bytes, text(digest), layout)
    return RecoveryPoint(
        kind="state",
        id=f"v{v}",
        label="current",
        version=v,
        captured_ms=updated_ms,
        taken_ms=updated_ms,
        data=data,
        doc=doc,
        text=raw_bytes,
        checksum=text(digest),
    )


def verify_entry(swarm_id: str, kind: str, raw: bytes | str) -> RecoveryPoint:
    """A snapshot or checkpoint from its stored JSON. Raises CorruptState."""
    try:
        entry = _entry_decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise CorruptState(kind, "", f"wrong schema: {e}") from e
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise CorruptState(kind, "", f"bad encoding: {e}") from e
    data_text = entry.data.encode()
    data, doc = verify_data(swarm_id, kind, entry.id, data_text, entry.checksum, entry.schema)
    return RecoveryPoint(
        kind=kind,
        id=entry.id,
        label=entry.label,
        version=entry.version,
        captured_ms=entry.state_updated_ms,
        taken_ms=entry.taken_ms,
        data=data,
        doc=doc,
        text=data_text,
        checksum=entry.checksum,
    )


def entry_id(raw: bytes | str) -> str:
    """Best-effort id of a stored entry that failed verification (for the quarantine record)."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return ""
    return str(value.get("id", "")) if isinstance(value, dict) else ""
