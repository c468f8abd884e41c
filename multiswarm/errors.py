"""Every error multiswarm raises, under one root: :class:`MultiswarmError`.

Redis and decoding errors are translated at the boundary (``raise ... from e``) so callers catch
these and never ``redis.exceptions`` or ``msgspec`` types. Errors that callers would naturally
catch as a builtin carry it as a second base (``ConfigError`` is also a ``ValueError``).
"""

from __future__ import annotations

from typing import Any, Protocol


class TaskRecord(Protocol):
    """What an error needs of a task record (multiswarm.messages.Task); a Protocol, so this
    module imports no other module of the package."""

    id: str
    status: str
    reason: str
    error: str


class MultiswarmError(Exception):
    """Root of every multiswarm error."""


class ConfigError(MultiswarmError, ValueError):
    """A setting is missing, malformed or out of range."""


class InvalidArgumentError(MultiswarmError, ValueError):
    """A caller passed a value out of range or of the wrong kind (an unknown strategy, a
    negative amount, duplicate voters...). A ValueError too, as Python callers expect."""


class CrossPartitionError(InvalidArgumentError):
    """Tasks submitted together would tie tasks of different coordination partitions (a
    dependency, a repeated id): refused, nothing submitted (decision 47)."""


class InvalidIdError(MultiswarmError, ValueError):
    """An id (swarm, agent, task, worker, namespace) does not match ``[A-Za-z0-9_.-]{1,128}``."""


class MessageDecodeError(MultiswarmError, ValueError):
    """Stored or received bytes could not be decoded into the expected type."""


class MessageTooLargeError(MultiswarmError, ValueError):
    """An encoded message exceeds the configured limit (bytes, not characters)."""


class RedisUnavailable(MultiswarmError, ConnectionError):
    """Redis did not answer after the configured retries."""


class ReplicaAckError(MultiswarmError):
    """A write that must survive a failover was acknowledged by fewer replicas than
    ``MULTISWARM_WAIT_REPLICAS`` asks for: it is on the master only.

    ``reply`` is the script's reply (decoded by the script's declaration), for callers that
    must act on what the write did anyway: a worker runs the tasks a claim leased to it.
    """

    def __init__(self, message: str, reply: Any = None) -> None:
        super().__init__(message)
        self.reply = reply


class ScriptError(MultiswarmError):
    """A Lua script refused an operation; ``code`` is the machine-readable reason.

    Parameters
    ----------
    code:
        The reason code the script returned, e.g. ``"ILLEGAL_TRANSITION"``.
    detail:
        Human-readable detail from the script.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


class IllegalTransition(ScriptError):
    """A status change the registry or task state machine does not allow."""


class NotFound(ScriptError, KeyError):
    """The swarm, task or worker does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return Exception.__str__(self)


class AlreadyExists(ScriptError):
    """An id is already in use."""


class CapacityExceeded(ScriptError):
    """A configured limit (e.g. ``SWARM_MAX_COUNT``) would be exceeded."""


class CoordinationError(MultiswarmError):
    """Leader election or a leader-only write failed."""


class StaleEpoch(CoordinationError, ScriptError):
    """A leader-only write carried a fencing epoch smaller than one storage has already seen."""

    def __init__(self, code: str = "STALE_EPOCH", detail: str = "") -> None:
        ScriptError.__init__(self, code, detail)


class HandlerError(MultiswarmError):
    """A task handler could not be resolved or is not allowed on this worker."""


class HandlerNotRegistered(HandlerError):
    """A task names a handler this worker neither registered (``@multiswarm.handler`` in a
    module it imports) nor allows by prefix: the worker refuses it, and the task goes back to
    the leader for a swarm that can run it (its attempt not counted)."""


class RedisServerError(MultiswarmError):
    """A private ``redis-server`` could not be found or started."""


class VersionConflict(ScriptError):
    """Optimistic concurrency: the stored version is not the one the caller read."""


class UnknownDependency(ScriptError, ValueError):
    """A task names a dependency that does not exist (dependencies must be submitted first)."""


class BadRequest(ScriptError, ValueError):
    """A script was called with malformed arguments."""


class WorkerUnknown(ScriptError):
    """The worker is not registered (declared dead after missing heartbeats): register again."""


class WorkerFailed(MultiswarmError):
    """A worker stopped because one of its loops raised: it handed back its tasks and left.

    Parameters
    ----------
    worker_id:
        The worker's id.
    loop:
        Which loop failed (``claim loop of swarm <id>``, ``heartbeat loop``, ...).
    cause:
        What it raised, ``"<ExceptionType>: <message>"`` on one line.
    """

    def __init__(self, worker_id: str, loop: str, cause: str) -> None:
        self.worker_id = worker_id
        self.loop = loop
        self.cause = cause
        super().__init__(f"worker {worker_id} stopped: its {loop} failed: {cause}")


class RequestTimeout(MultiswarmError, TimeoutError):
    """``SwarmMessenger.request`` got no response within its timeout."""


class RequestFailed(MultiswarmError):
    """The responder's request handler raised; ``detail`` is its error text.

    Parameters
    ----------
    detail:
        ``"<ExceptionType>: <message>"`` as reported by the responder.
    responder:
        Sender id of the swarm that answered.
    """

    def __init__(self, detail: str, responder: str = "") -> None:
        self.detail = detail
        self.responder = responder
        super().__init__(f"request failed at {responder or 'the responder'}: {detail}")


class MessageRejected(MultiswarmError, ValueError):
    """A received message was refused; ``reason`` is a code such as ``forged`` or ``stale``.

    Parameters
    ----------
    reason:
        One of ``multiswarm.envelopes.REASONS``.
    detail:
        Human-readable detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class NotInterrupted(IllegalTransition):
    """A recovery was asked for a swarm that is not ``interrupted`` (nothing to recover)."""


class StalePlan(ScriptError):
    """A recovery plan was made for an earlier interruption, or another plan replaced it."""


class CorruptState(MessageDecodeError):
    """A stored state, snapshot or checkpoint failed verification.

    Parameters
    ----------
    kind:
        ``state`` | ``checkpoint`` | ``snapshot``.
    entry_id:
        ``v<version>`` for a state, the entry id of a snapshot or checkpoint ('' if unreadable).
    reason:
        ``bad encoding: ...`` | ``checksum mismatch`` | ``wrong schema: ...``.
    """

    def __init__(self, kind: str, entry_id: str, reason: str) -> None:
        self.kind = kind
        self.entry_id = entry_id
        self.reason = reason
        super().__init__(f"{kind} {entry_id or '?'}: {reason}")


class RecoveryError(MultiswarmError):
    """A recovery could not be planned or was not applied."""


class NoRecoverySource(RecoveryError, LookupError):
    """The requested recovery source (state, checkpoint or snapshot) has no valid entry."""


class LowConfidence(RecoveryError):
    """A plan's confidence is below the minimum the caller asked for; nothing was applied."""


class CircuitOpenError(MultiswarmError):
    """A shared circuit breaker refused a call (open, or every half-open trial permit taken).

    Parameters
    ----------
    name:
        The breaker's name.
    state:
        ``open`` | ``half_open``.
    retry_after_ms:
        Server-clock ms until the breaker may admit a call again (open: until half-open;
        half-open: at most until the outstanding trial calls time out).
    """

    def __init__(self, name: str, state: str, retry_after_ms: int) -> None:
        self.name = name
        self.state = state
        self.retry_after_ms = retry_after_ms
        super().__init__(f"circuit breaker {name} is {state}; retry in {retry_after_ms} ms")


class ResourceExhausted(CapacityExceeded):
    """A resource pool has less free than an allocation asked for; nothing was allocated."""


class NotEligible(ScriptError):
    """A vote came from an id that is not one of the proposal's voters."""


class TaskFailed(MultiswarmError):
    """``wait_for`` saw the task end dead or cancelled; ``task`` holds the record."""

    def __init__(self, task: TaskRecord) -> None:
        self.task = task
        super().__init__(f"task {task.id} ended {task.status}: {task.reason or task.error}")


class ScriptReplyError(MessageDecodeError):
    """A Lua script answered with a reply of another shape than its declaration in
    ``multiswarm/ops`` says (a script and its Python declaration out of step)."""
