"""The typed replies and options of the :class:`~multiswarm.api.Multiswarm` facade.

Every facade method returns a msgspec Struct (or a list of them): the stored records
(:class:`~multiswarm.messages.Swarm`, :class:`~multiswarm.messages.Task`,
:class:`~multiswarm.messages.WorkerInfo`...) where they exist, the small views below otherwise,
so ``msgspec.json.encode`` serves any front end (the CLI's ``--json``, the HTTP API).
Times are milliseconds (``*_ms``), sizes bytes.

:class:`Host` is what the facade's plain-function modules (``*_api.py``) need from the facade.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from multiswarm import keys as _keys
from multiswarm import messages as _messages
from multiswarm import resources as _resources
from multiswarm import state_codec as _state_codec
from multiswarm.config import Settings
from multiswarm.connection import Client
from multiswarm.keys import Keys
from multiswarm.partition_routes import Routes
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from multiswarm.tasks import TaskStore

#: Task statuses, in lifecycle order.
TASK_STATUSES: tuple[str, ...] = tuple(_keys.TASK_STATUSES)
#: Task and swarm priorities, highest first.
PRIORITIES: tuple[str, ...] = tuple(_messages.PRIORITIES)
#: Most executions of one task (``TaskOptions.max_attempts``).
MAX_ATTEMPTS: int = _messages.MAX_ATTEMPTS
#: Swarm statuses (the registry state machine, ``scripts/lua/lib/03_swarms.lua``).
SWARM_STATUSES: tuple[str, ...] = tuple(_keys.SWARM_STATUSES)
#: Kinds of recovery source, in the order a plan tries them.
RECOVERY_SOURCES: tuple[str, ...] = tuple(_state_codec.SOURCE_KINDS)
#: Units of the standard resource pools (other pool types are unitless).
RESOURCE_UNITS: dict[str, str] = dict(_resources.STANDARD_TYPES)


class Part(Protocol):
    """One coordination partition as the facade's function modules see it (decision 47):
    settings, client and the components built on that partition's keys."""

    settings: Settings
    client: Client
    keys: Keys
    scripts: Scripts
    registry: SwarmRegistry
    tasks: TaskStore
    state: SwarmStateManager
    #: who applies recoveries (recorded in the recovery log)
    actor: str


class Host(Part, Protocol):
    """The facade as its function modules see it: partition 0's components (the control
    slot: votes, breakers, messages, the deployment record), every partition (``parts``,
    index = partition number; ``[host]`` itself when there is one) and the routing caches
    (:mod:`multiswarm.partition_api` routes by them)."""

    parts: Sequence[Part]
    routes: Routes


class TaskOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of one task (:meth:`Multiswarm.distribute_task`); as :func:`~multiswarm.task_spec`.

    Attributes
    ----------
    id:
        Task id [default: a random hex id]; submitting an id again does nothing.
    name:
        Free label.
    capabilities:
        What a swarm must offer to take the task.
    priority:
        ``high`` | ``normal`` | ``low``.
    depends_on:
        Ids of tasks whose results this one needs (it waits for them).
    max_attempts:
        Executions before the task ends ``dead``.
    lease_ms:
        Visibility timeout in ms (at least 1 000) [default: ``settings.task_lease_ms``].
    timeout_ms:
        Longest single execution, in ms.
    backoff_ms, backoff_max_ms:
        Retry delay ``backoff_ms * 2**(attempt-1)``, capped at ``backoff_max_ms``, in ms.
    result_ttl_ms:
        How long the finished task and its result are kept, in ms [default: the deployment's].
    """

    id: str | None = None
    name: str = ""
    capabilities: list[str] = []
    priority: str = "normal"
    depends_on: list[str] = []
    max_attempts: int = 3
    lease_ms: int | None = None
    timeout_ms: int = 300_000
    backoff_ms: int = 1_000
    backoff_max_ms: int = 60_000
    result_ttl_ms: int | None = None


class TaskReceipt(msgspec.Struct, frozen=True):
    """A submitted task: its id and status right after submission (``ready``, ``pending``
    while waiting on dependencies, or the status it already had when submitted before)."""

    id: str
    status: str


class PartitionLeader(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds one coordination partition's leader lease (``holder`` None: vacant, then
    ``epoch`` and ``lease_ms_left`` are 0)."""

    partition: int
    holder: str | None
    epoch: int
    lease_ms_left: int


class LeaderInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who holds the leader lease (the stored record is :class:`multiswarm.messages.LeaderInfo`).

    With several coordination partitions (decision 44) each has its own lease: the fields
    are partition 0's leader (or, while that lease is vacant, the lowest-numbered held
    one's), and ``partitions`` lists every partition's; with one partition it is empty and
    left out of the JSON, so the reply is as before partitions.

    Attributes
    ----------
    holder, host, pid:
        Contender id, its host name and process id.
    epoch:
        Fencing epoch, +1 per new leader.
    lease_ms_left:
        Milliseconds until the lease expires unless renewed.
    """

    holder: str
    host: str
    pid: int
    epoch: int
    lease_ms_left: int
    partitions: list[PartitionLeader] = []


class SwarmStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One swarm in :class:`StatusReport`: ``active`` tasks of ``capacity``, hosting workers."""

    id: str
    status: str
    capabilities: list[str]
    priority: str
    active: int
    capacity: int
    paused: bool
    hosts: list[str]
    recoveries: int


class WorkerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One worker in :class:`StatusReport`: ``running`` and ``tasks`` (ids) from the task
    records, live; ``beat_ms_ago``: age of its last heartbeat."""

    id: str
    host: str
    pid: int
    swarms: list[str]
    running: int
    tasks: list[str] = []
    beat_ms_ago: int


class StatusReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything at a glance: ``tasks`` is status -> count, ``counters`` the task counters
    (submitted, completed, retries...); ``leader`` is None when the lease is vacant."""

    namespace: str
    leader: LeaderInfo | None
    swarms: list[SwarmStatus]
    workers: list[WorkerStatus]
    tasks: dict[str, int]
    counters: dict[str, int]


class HealthReport(msgspec.Struct, frozen=True):
    """``ok`` when Redis answers and a leader holds the lease; else ``reason`` says which not."""

    ok: bool
    reason: str


class AgentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One swarm member: what it runs now (live), its health as its worker last reported it.

    Attributes
    ----------
    kind:
        ``python`` (agent process) or ``external`` (a supervised command).
    state:
        ``busy`` while it runs a task (from the task records), else as reported (``idle``,
        ``failed``, ``retired``...).
    tasks:
        Ids of the tasks it runs, from the task records (see
        :func:`multiswarm.ops_api.list_agents` for how a task is tied to its agent).
    health:
        ``healthy`` | ``degraded`` | ``unhealthy`` | ``dead``.
    stale:
        Its worker has not reported for :data:`multiswarm.ops_api.AGENT_TIMEOUT_MS`.
    reported_ms_ago:
        Age of that report.
    """

    agent: str
    swarm: str | None
    worker: str
    kind: str | None
    state: str | None
    tasks: list[str] = []
    health: str
    failures: int
    restarts: int
    pid: int | None
    stale: bool
    reported_ms_ago: int


class TaskCounters(msgspec.Struct, frozen=True, kw_only=True):
    """Totals since the namespace was created. ``failed``: failed executions, each one either
    retried (``retries``) or the last (``dead``)."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    dead: int = 0
    retries: int = 0
    cancelled: int = 0
    executions: int = 0
    recovered_tasks: int = 0
    duplicate_results: int = 0


class Statistics(msgspec.Struct, frozen=True, kw_only=True):
    """``tasks``: status -> count now; ``counters``: totals; ``swarms``: status -> count."""

    tasks: dict[str, int]
    counters: TaskCounters
    swarms: dict[str, int]
    leader: LeaderInfo | None


class RecoveryPointInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot or checkpoint as listed (its data is not read out).

    Attributes
    ----------
    label:
        A snapshot's label, a checkpoint's name.
    state_updated_ms, taken_ms:
        When the copied state was written, when the copy was taken.
    bytes:
        Size of the stored entry.
    integrity:
        ``ok``, or why verification failed.
    """

    id: str
    label: str
    version: int
    state_updated_ms: int
    taken_ms: int
    bytes: int
    integrity: str


class QuarantineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """An entry moved aside as corrupt: its kind (state/snapshot/checkpoint), id, reason."""

    kind: str | None = None
    id: str | None = None
    reason: str | None = None
    at_ms: int | None = None


class RecoveryLogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """What one applied recovery did (``by``: the actor; ``requeued``: task ids)."""

    plan: str = ""
    swarm: str = ""
    source: str = ""
    source_id: str = ""
    source_label: str = ""
    source_version: int = 0
    confidence: float = 0.0
    interrupted_ms: int = 0
    requeued: list[str] = []
    completed: int = 0
    missing: list[str] = []
    agents: list[str] = []
    rejected: list[dict[str, Any]] = []
    by: str = ""
    at_ms: int = 0


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A refused message: why (``malformed``, ``forged``...), where, and the raw text
    (truncated)."""

    id: str
    reason: str = ""
    detail: str = ""
    channel: str = ""
    receiver: str = ""
    raw: str = ""
    ms: int = 0


class DeadLetters(msgspec.Struct, frozen=True):
    """The newest refused messages, and ``counts``: ``dlq`` and ``dlq:<reason>`` totals."""

    entries: list[DeadLetter]
    counts: dict[str, int]
