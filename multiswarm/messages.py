"""Records and messages as msgspec Structs; encoders and decoders built once.

Task, swarm, worker and leader records are the JSON that Lua scripts keep (cjson on the server);
payloads and results are msgpack. Pub/sub envelopes are a tagged union decoded by one typed
decoder, so an unknown or malformed message is a :class:`MessageDecodeError`, never a crash.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import msgspec

from multiswarm.errors import BadRequest, MessageDecodeError, MessageTooLargeError

#: Task priorities, as the rank kept in Redis (lower runs first).
PRIORITIES = {"high": 0, "normal": 1, "low": 2}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}

#: Most executions of one task (``max_attempts``): the same bound for the API, the HTTP API and
#: ``tasks submit --max-attempts``. A thousand attempts at the default 60 s backoff cap is ~17 h;
#: past it a task that keeps failing belongs in the dead-letter queue.
MAX_ATTEMPTS = 1_000

#: Largest encoded message, in bytes (the original system's 1 MiB, counted in bytes here).
MAX_MESSAGE_BYTES = 1024 * 1024


def _csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


class TaskSpec(msgspec.Struct, kw_only=True):
    """What submit_tasks.lua receives for one task (times in milliseconds)."""

    id: str
    handler: str
    name: str = ""
    caps: str = ""
    prio: int = 1
    max_attempts: int = 3
    lease_ms: int = 30_000
    timeout_ms: int = 300_000
    backoff_ms: int = 1_000
    backoff_max_ms: int = 60_000
    deps: str = ""
    #: How long the finished task and its result are kept; 0: the deployment's
    #: ``MULTISWARM_RESULT_TTL_MS`` (prune_tasks.lua)
    result_ttl_ms: int = 0


class _SpecWire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A :class:`TaskSpec` as submit_tasks.lua reads it: a MessagePack map whose pairs become
    the new record's as they are (decision 84), so the four fields whose record default is
    ``''`` or 0 are left out at that value (sparse records, decision 57) and the settings,
    whose record defaults are not zero, are always there."""

    id: str
    handler: str
    prio: int
    max_attempts: int
    lease_ms: int
    timeout_ms: int
    backoff_ms: int
    backoff_max_ms: int
    name: str = ""
    caps: str = ""
    deps: str = ""
    result_ttl_ms: int = 0


#: Largest value of a task's integer settings (attempts, lease, timeout, backoff; ~8,900 years
#: in ms): every sum the scripts store in a record (now + a lease, ...) stays an exact integer
#: below 2**53, a Lua number's limit (:func:`check_settings`, decision 64).
MAX_SETTING = 2**48
#: TaskSpec's integer settings (:func:`check_settings`).
SETTINGS = (
    *("prio", "max_attempts", "lease_ms", "timeout_ms"),
    *("backoff_ms", "backoff_max_ms", "result_ttl_ms"),
)


def check_settings(spec: TaskSpec) -> TaskSpec:
    """``spec``, once its numeric settings are integers in [0, :data:`MAX_SETTING`]: the task
    scripts store them and sums of them with time stamps in the record, which must stay exact
    integers below 2**53 (Lua's numbers are doubles; MessagePack records, decision 64).
    Checked here rather than in submit_tasks.lua, where it cost 10 % of a submission.

    Raises
    ------
    BadRequest
    """
    for field in SETTINGS:
        value = getattr(spec, field)
        if type(value) is not int or not 0 <= value <= MAX_SETTING:
            raise BadRequest(
                "BAD_REQUEST", f"task {spec.id}: {field}={value!r} is not an integer in [0, 2**48]"
            )
    return spec


class Task(msgspec.Struct, kw_only=True):
    """A task record as stored by the task scripts (lib/02_tasks.lua)."""

    id: str
    handler: str
    status: str
    name: str = ""
    caps: str = ""
    prio: int = 1
    swarm: str = ""
    worker: str = ""
    agent: str = ""
    token: str = ""
    attempts: int = 0
    max_attempts: int = 3
    lease_ms: int = 30_000
    timeout_ms: int = 300_000
    backoff_ms: int = 1_000
    backoff_max_ms: int = 60_000
    deps: str = ""
    deps_left: int = 0
    seq: int = 0
    created_ms: int = 0
    updated_ms: int = 0
    started_ms: int = 0
    finished_ms: int = 0
    lease_until: int = 0
    due_ms: int = 0
    reason: str = ""
    error: str = ""
    completed_by: str = ""
    epoch: int = 0
    result_ttl_ms: int = 0
    #: the running attempt's latest report (TaskContext.progress): fraction done, note, when
    progress: float = 0.0
    progress_note: str = ""
    progress_ms: int = 0

    @property
    def capabilities(self) -> list[str]:
        return _csv(self.caps)

    @property
    def dependencies(self) -> list[str]:
        return _csv(self.deps)

    @property
    def priority(self) -> str:
        return PRIORITY_NAMES.get(self.prio, str(self.prio))


class Swarm(msgspec.Struct, kw_only=True):
    """A swarm record as stored by the registry scripts (lib/03_swarms.lua)."""

    id: str
    status: str
    caps: str = ""
    prio: int = 1
    max_agents: int = 0
    capacity: int = 0
    active: int = 0
    hosts: str = ""
    objective: str = ""
    created_ms: int = 0
    status_ms: int = 0
    mem_load: float = 0.0
    recoveries: int = 0
    paused: bool = False
    #: external members per hosting worker (0 when the swarm has no external command)
    external: int = 0

    @property
    def capabilities(self) -> list[str]:
        return _csv(self.caps)

    @property
    def host_workers(self) -> list[str]:
        return _csv(self.hosts)


class WorkerInfo(msgspec.Struct, kw_only=True):
    """A worker record: who it is, what it hosts, its last report."""

    id: str
    host: str = ""
    pid: int = 0
    swarms: str = ""
    registered_ms: int = 0
    beat_ms: int = 0
    running: int = 0
    agents: int = 0
    mem_used: int = 0
    mem_total: int = 0
    #: agent id -> {swarm, kind, state, health, failures, restarts, pid} (last heartbeat)
    agent_states: dict[str, dict[str, Any]] = {}


class LeaderInfo(msgspec.Struct, kw_only=True):
    """The leader key's value."""

    holder: str
    host: str = ""
    pid: int = 0
    epoch: int = 0
    acquired_ms: int = 0


# -- pub/sub envelopes -------------------------------------------------------------------------
class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One message on a channel. ``type`` is free-form so user-defined types pass through.

    Attributes
    ----------
    id, type, sender, target, ts_ms, correlation_id, payload, v (schema version), sig (optional
    HMAC, see the messenger).
    """

    type: str
    sender: str = ""
    sender_agent: str = ""
    target: str = ""
    payload: dict[str, Any] = {}
    id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex)
    ts_ms: int = msgspec.field(default_factory=lambda: int(time.time() * 1000))
    correlation_id: str = ""
    v: int = 1
    sig: str = ""


MessageType = Literal[
    "coordination_request",
    "task_assignment",
    "task_completed",
    "resource_allocation_request",
    "leadership_announcement",
    "conflict_detected",
    "request",
    "response",
]

_json_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)
_task_decoder = msgspec.msgpack.Decoder(Task)
_task_json_decoder = msgspec.json.Decoder(Task)
_swarm_decoder = msgspec.json.Decoder(Swarm)
_worker_decoder = msgspec.json.Decoder(WorkerInfo)
_leader_decoder = msgspec.json.Decoder(LeaderInfo)
_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder()


def encode_json(value: Any) -> bytes:
    return _json_encoder.encode(value)


def encode_task_spec(spec: TaskSpec) -> bytes:
    """``spec`` as submit_tasks.lua reads it: a MessagePack map of at most 12 entries (its
    first byte 0x88-0x8c; a JSON spec, as older clients send, starts with ``{``). Call
    :func:`check_settings` first: Lua trusts the settings' types and bounds."""
    return _msgpack_encoder.encode(
        _SpecWire(
            id=spec.id,
            handler=spec.handler,
            prio=spec.prio,
            max_attempts=spec.max_attempts,
            lease_ms=spec.lease_ms,
            timeout_ms=spec.timeout_ms,
            backoff_ms=spec.backoff_ms,
            backoff_max_ms=spec.backoff_max_ms,
            name=spec.name,
            caps=spec.caps,
            deps=spec.deps,
            result_ttl_ms=spec.result_ttl_ms,
        )
    )


def encode_envelope(env: Envelope, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Encode; raise :class:`MessageTooLargeError` past ``limit`` bytes (not characters)."""
    data = _json_encoder.encode(env)
    if len(data) > limit:
        raise MessageTooLargeError(f"message is {len(data)} bytes, limit {limit}")
    return data


def _decode(decoder: msgspec.json.Decoder[Any], raw: bytes | str, what: str) -> Any:
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise MessageDecodeError(f"corrupt {what}: {e}") from e


def decode_envelope(raw: bytes | str) -> Envelope:
    value: Envelope = _decode(_envelope_decoder, raw, "message")
    return value


def decode_task(raw: bytes | str) -> Task:
    """A task record as the scripts store it: MessagePack (decision 64), or JSON as earlier
    versions wrote it (it starts with ``{``; a MessagePack map never does). Fields left out
    (sparse records, decision 57) take :class:`Task`'s defaults.

    Raises
    ------
    MessageDecodeError
        Neither, or a field of the wrong type.
    """
    if isinstance(raw, str) or raw[:1] == b"{":
        value: Task = _decode(_task_json_decoder, raw, "task record")
        return value
    try:
        return _task_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise MessageDecodeError(f"corrupt task record: {e}") from e


def decode_swarm(raw: bytes | str) -> Swarm:
    value: Swarm = _decode(_swarm_decoder, raw, "swarm record")
    return value


def decode_worker(raw: bytes | str) -> WorkerInfo:
    value: WorkerInfo = _decode(_worker_decoder, raw, "worker record")
    return value


def decode_leader(raw: bytes | str) -> LeaderInfo:
    value: LeaderInfo = _decode(_leader_decoder, raw, "leader record")
    return value


def pack(value: Any) -> bytes:
    """Payloads and results: msgpack."""
    return _msgpack_encoder.encode(value)


def unpack(raw: bytes) -> Any:
    """Inverse of :func:`pack`; :class:`MessageDecodeError` on corrupt bytes."""
    try:
        return _msgpack_decoder.decode(raw)
    except msgspec.DecodeError as e:
        raise MessageDecodeError(f"corrupt payload: {e}") from e
