"""The only place Redis key and channel names are built.

Global keys share the namespace as hash tag (``{swarm}:index``) so every coordination script runs
in one slot of a Redis Cluster. Per-swarm state carries the swarm id as tag
(``swarm:state:{<id>}``) so state scripts spread over the cluster. Channels keep the seed names
(``swarm:tasks``...). On a cluster they are sharded channels (``SSUBSCRIBE``/``SPUBLISH``,
:mod:`multiswarm.feed`) whose slot is that of the name, which is the slot of the channel's history
stream (``<ns>:history:{<channel>}``), so ``publish_message.lua`` appends and publishes in one
slot; no channel needs a hash tag of its own. The exception is :attr:`Keys.classic_channels`. The full map with types,
TTLs and the scripts that touch each key is ``docs/keys.md``.
"""

from __future__ import annotations

import functools
import re

from multiswarm.errors import ConfigError, InvalidIdError
from multiswarm.slots import partition_tag
from multiswarm.task_keys import TaskKeys

#: Ids of swarms, agents, tasks, workers and namespaces; no ':' '{' '}' ',' so they cannot
#: forge another key, hash tag or list element.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,128}")

#: Swarm registry statuses, in the order the status-index keys are passed to scripts.
SWARM_STATUSES = ("initializing", "active", "recovering", "interrupted", "completed", "failed")

__all__ = ["SWARM_STATUSES", "TASK_STATUSES", "Keys", "TaskKeys", "check_id", "request_key"]

#: Task statuses, in the order the status-index keys are passed to scripts (see lib/tasks.lua).
TASK_STATUSES = (
    "pending",
    "ready",
    "assigned",
    "running",
    "completed",
    "failed",
    "dead",
    "cancelled",
)


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise :class:`InvalidIdError`."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidIdError(f"invalid {what} {value!r}: expected [A-Za-z0-9_.-]{{1,128}}")
    return value


class Keys:
    """Key and channel names of one namespace (default ``swarm``), or of one coordination
    partition of it.

    Parameters
    ----------
    namespace:
        Prefix of every key and channel; validated like an id.
    partition, partitions:
        Which coordination partition these keys address, of how many (decision 44): every
        key of the partition carries the tag :func:`partition_tag`; channels and per-swarm
        state keep the namespace's names. Partition 0 is the namespace itself.

    Raises
    ------
    InvalidIdError
        ``namespace`` is not an id.
    ConfigError
        ``partition`` is not in ``0 .. partitions - 1``.
    """

    def __init__(self, namespace: str = "swarm", partition: int = 0, partitions: int = 1) -> None:
        self.ns = check_id(namespace, "namespace")
        if not 0 <= partition < partitions:
            raise ConfigError(f"partition {partition} is not in 0..{partitions - 1}")
        self.partition = partition
        self.partitions = partitions
        self._g = "{" + partition_tag(self.ns, partition, partitions) + "}"
        #: suffix of the channels that wake this partition's own roles (none for partition 0)
        self._p = f":p{partition}" if partition else ""

    @classmethod
    def all(cls, namespace: str, partitions: int) -> list[Keys]:
        """The keys of every partition of ``namespace``, partition 0 (the control slot) first."""
        return [cls(namespace, k, partitions) for k in range(partitions)]

    # -- registry ---------------------------------------------------------------------------
    @property
    def index(self) -> str:
        return f"{self._g}:index"

    def swarm_status(self, status: str) -> str:
        return f"{self._g}:status:{status}"

    @property
    def swarm_status_all(self) -> list[str]:
        return [self.swarm_status(s) for s in SWARM_STATUSES]

    @property
    def swarms(self) -> str:
        return f"{self._g}:swarms"

    # The dispatch index (scripts/lua/lib/01b_swarm_index.lua builds these same names from the
    # swarms key it is passed; keep both in step).
    @property
    def swarm_active(self) -> str:
        """Hash swarm id -> tasks assigned to or running in it."""
        return f"{self.swarms}:active"

    @property
    def swarm_entries(self) -> str:
        """Hash swarm id -> JSON {p: profile id, cap, st: open|held|'', why, hosts}."""
        return f"{self.swarms}:entry"

    @property
    def swarm_profiles(self) -> str:
        """Hash profile id -> JSON {caps, handlers, prefixes, prio, n}; ``s:<sig>`` -> id."""
        return f"{self.swarms}:profiles"

    @property
    def swarm_room(self) -> str:
        """Hash profile id -> free slots of its open swarms."""
        return f"{self.swarms}:room"

    def swarm_profile_index(self, kind: str, profile: str) -> str:
        """Zset of one profile's swarms: ``open``, ``load`` (with room, by load), ``rr`` (with
        room, by id) or ``held`` (active but paused or without a live host)."""
        if kind not in ("open", "load", "rr", "held"):
            raise ConfigError(f"no swarm index {kind!r}")
        return f"{self.swarms}:{kind}:{profile}"

    @property
    def swarm_requeue(self) -> str:
        """Zset: swarms left without hosts whose queued tasks reap_workers.lua hands back."""
        return f"{self.swarms}:requeue"

    @property
    def swarm_stale(self) -> str:
        """Zset swarm id -> ms: swarms dispatch found without a live host."""
        return f"{self.swarms}:stale"

    @property
    def worker_mem(self) -> str:
        """Hash worker id -> memory load in [0, 1] of its last beat."""
        return f"{self.swarms}:mem"

    @property
    def archive(self) -> str:
        return f"{self._g}:archive"

    @property
    def archive_records(self) -> str:
        return f"{self._g}:archive:records"

    @property
    def workers(self) -> str:
        return f"{self._g}:workers"

    @property
    def heartbeats(self) -> str:
        return f"{self._g}:heartbeats"

    @property
    def workers_gone(self) -> str:
        """Zset: removed workers whose running tasks are not all handled (1: left, 0: died)."""
        return f"{self._g}:workers:gone"

    def queue(self, swarm_id: str) -> str:
        return f"{self._g}:queue:{check_id(swarm_id, 'swarm id')}"

    # -- coordination ------------------------------------------------------------------------
    @property
    def leader(self) -> str:
        return f"{self._g}:leader"

    def sweep_clock(self, sweep: str) -> str:
        """``<last run ms>|<blind from>|<blind to>`` of ``leases`` (reap_leases.lua) or
        ``workers`` (reap_workers.lua): the blind-time guard of decision 114."""
        return f"{self._g}:clock:{sweep}"

    @property
    def epoch(self) -> str:
        return f"{self._g}:leader:epoch"

    @property
    def rr_cursor(self) -> str:
        return f"{self._g}:rr_cursor"

    # -- tasks ---------------------------------------------------------------------------------
    @property
    def tasks(self) -> str:
        return f"{self._g}:tasks"

    def task_status(self, status: str) -> str:
        return f"{self._g}:tasks:status:{status}"

    @property
    def task_keys(self) -> TaskKeys:
        """The keys every task script takes first, by name (:class:`TaskKeys`)."""
        g = self._g
        return TaskKeys(
            tasks=self.tasks,
            payload=self.payloads,
            result=self.results,
            dependents=f"{g}:tasks:dependents",
            ready=self.ready,
            delayed=f"{g}:tasks:delayed",
            leases=self.leases,
            dlq=self.dlq,
            completions=self.completions,
            stats=self.stats,
            swarms=self.swarms,
            epoch=self.epoch,
            workers=self.workers,
            heartbeats=self.heartbeats,
            events_watch=self.events_watch,
            running_by_worker=f"{g}:tasks:running_by_worker",
            waiting=f"{g}:tasks:waiting",
            readers=f"{g}:tasks:readers",
            statuses=tuple(self.task_status(s) for s in TASK_STATUSES),
        )

    @property
    def task_keyset(self) -> list[str]:
        """KEYS[1..26] of every task script: :attr:`task_keys` in its field order (a new list
        each time; the names are built once: the worker passes them at every script call)."""
        return list(self._task_keyset)

    @functools.cached_property
    def _task_keyset(self) -> tuple[str, ...]:
        return tuple(self.task_keys.as_list())

    @property
    def payloads(self) -> str:
        return f"{self._g}:tasks:payload"

    @property
    def results(self) -> str:
        return f"{self._g}:tasks:result"

    @property
    def ready(self) -> str:
        return f"{self._g}:tasks:ready"

    @property
    def leases(self) -> str:
        return f"{self._g}:tasks:leases"

    @property
    def parked_index(self) -> str:
        """Capability sets with parked ready tasks (hash set -> JSON {reason, sweep})."""
        return f"{self._g}:tasks:parked"

    def parked(self, capset: str) -> str:
        """Ready tasks of one capability set (sorted csv) that no swarm can take now.

        The set comes from task records (ids, commas); the brackets keep ``''`` readable.
        """
        return f"{self._g}:tasks:parked:[{capset}]"

    @property
    def dlq(self) -> str:
        return f"{self._g}:tasks:dlq"

    @property
    def completions(self) -> str:
        return f"{self._g}:tasks:completions"

    @property
    def stats(self) -> str:
        return f"{self._g}:stats"

    @property
    def task_retained(self) -> str:
        """Finished tasks the prune sweep passed but kept (own longer TTL, or a dependent still
        to read the result), by the ms they are looked at again (prune_tasks.lua)."""
        return f"{self._g}:tasks:retained"

    @property
    def task_prune_cursor(self) -> str:
        """Hash terminal status -> finish ms up to which the prune sweep has read its index."""
        return f"{self._g}:tasks:prune"

    # -- resources, breakers, votes (namespace slot) -------------------------------------------
    @property
    def resources(self) -> str:
        """Resource pools: hash ``cap:<type>`` / ``used:<type>`` -> amount."""
        return f"{self._g}:resources"

    @property
    def resource_holders(self) -> str:
        """Hash ``<type>:<swarm id>`` -> amount the swarm holds."""
        return f"{self._g}:resources:holders"

    @property
    def breakers(self) -> str:
        """Hash breaker name -> JSON record."""
        return f"{self._g}:breakers"

    @property
    def votes_index(self) -> str:
        """Zset of open proposals by deadline."""
        return f"{self._g}:votes"

    def votes(self, proposal_id: str) -> str:
        """One proposal's hash (meta and ballots)."""
        return f"{self._g}:votes:{check_id(proposal_id, 'proposal id')}"

    # -- per-swarm state (own slot per swarm) --------------------------------------------------
    def state(self, swarm_id: str) -> str:
        return f"{self.ns}:state:{{{check_id(swarm_id, 'swarm id')}}}"

    def snapshots(self, swarm_id: str) -> str:
        return f"{self.ns}:snapshots:{{{check_id(swarm_id, 'swarm id')}}}"

    def checkpoints(self, swarm_id: str) -> str:
        return f"{self.ns}:checkpoints:{{{check_id(swarm_id, 'swarm id')}}}"

    def quarantine(self, swarm_id: str) -> str:
        return f"{self.ns}:quarantine:{{{check_id(swarm_id, 'swarm id')}}}"

    def recovery_log(self, swarm_id: str) -> str:
        return f"{self.ns}:recovery:{{{check_id(swarm_id, 'swarm id')}}}"

    @property
    def recoveries(self) -> str:
        """Applied recovery plans (plan id -> JSON outcome), in the global slot."""
        return f"{self._g}:recoveries"

    # -- messenger ------------------------------------------------------------------------------
    def history(self, channel: str) -> str:
        """Bounded history stream of one channel (any slot: one key per script)."""
        return f"{self.ns}:history:{{{channel}}}"

    @property
    def message_dlq(self) -> str:
        return f"{self._g}:messages:dlq"

    @property
    def message_stats(self) -> str:
        return f"{self._g}:messages:stats"

    @property
    def message_seen(self) -> str:
        """Recently seen signed-message ids (replay protection)."""
        return f"{self._g}:messages:seen"

    # -- partition directory (control slot: read through partition 0's keys) ------------------
    @property
    def swarm_partitions(self) -> str:
        """Hash ``<swarm id>`` -> ``<partition>|<capabilities csv>``: where each swarm was placed
        (place_swarms.lua, decision 44)."""
        return f"{self._g}:partitions:swarms"

    @property
    def partition_caps(self) -> str:
        """Hash ``<partition>|<capability>`` -> swarms placed there offering it, and
        ``<partition>|*`` -> swarms placed there (place_swarms.lua)."""
        return f"{self._g}:partitions:caps"

    @property
    def task_routes(self) -> tuple[str, str]:
        """Hash id -> partition, zset id -> ms it ends: reserve_task_routes.lua's reservations."""
        return f"{self._g}:partitions:tasks", f"{self._g}:partitions:tasks:until"

    @property
    def coordinators(self) -> str:
        """Zset of live coordinator ids, scored by the Unix ms their membership expires:
        how many share the partitions' leases (coordinators_alive.lua, decision 44)."""
        return f"{self._g}:coordinators"

    @property
    def deployment(self) -> str:
        """Deployment-wide timings (JSON), written once (multiswarm.deployment)."""
        return f"{self._g}:deployment"

    def ch_reply(self, requester: str) -> str:
        return f"{self.ns}:reply:{check_id(requester, 'requester id')}"

    # -- channels (seed names when the namespace is "swarm") -----------------------------------
    @property
    def ch_global(self) -> str:
        return f"{self.ns}:global"

    @property
    def ch_coordination(self) -> str:
        return f"{self.ns}:coordination{self._p}"

    @property
    def ch_agents(self) -> str:
        return f"{self.ns}:agents"

    @property
    def ch_tasks(self) -> str:
        return f"{self.ns}:tasks{self._p}"

    @property
    def ch_events(self) -> str:
        return f"{self.ns}:events"

    @property
    def events_watch(self) -> str:
        """String key, set with a TTL by every listener of :attr:`ch_events` and renewed while
        it listens: task scripts publish lifecycle events only while it exists (decision 37)."""
        return f"{self._g}:events:watch"

    @property
    def classic_channels(self) -> frozenset[str]:
        """Channels kept on classic pub/sub on a cluster too: the task events, which the task
        scripts PUBLISH (lib/02_tasks.lua); a script may only SPUBLISH a channel of its own slot,
        the ``{ns}`` slot, and ``<ns>:events`` hashes elsewhere. The wake-up channels
        (:meth:`is_classic`) are classic too."""
        return frozenset({self.ch_events})

    def is_classic(self, channel: str) -> bool:
        """True for a channel on classic pub/sub on a cluster too: :attr:`classic_channels`
        and the wake-ups the task scripts PUBLISH (:attr:`wake_leader`, :meth:`wake_swarm`),
        which carry no message, only the fact that there is something to look at."""
        return channel in self.classic_channels or channel.startswith(f"{self._g}:wake:")

    # Wake-ups (decision 50): the task scripts PUBLISH an empty message on these as they make
    # work (submit, finish: the leader's; dispatch: each swarm's). Their names carry the
    # partition's hash tag, and lib/01_common.lua wake_channel builds the same names.
    @property
    def wake_leader(self) -> str:
        """Channel that wakes this partition's leader (tasks submitted or slots freed), and the
        stream of that name its dispatch calls wait on (it keeps only the last entry)."""
        return f"{self._g}:wake:leader"

    def wake_swarm(self, swarm_id: str) -> str:
        """Channel that wakes the claim loops of ``swarm_id`` (tasks assigned to it), and the
        stream of that name their waiting claims block on (it keeps only the last entry)."""
        return f"{self._g}:wake:swarm:{check_id(swarm_id, 'swarm id')}"

    def ch_swarm(self, swarm_id: str) -> str:
        return f"{self.ns}:{check_id(swarm_id, 'swarm id')}"


def request_key(first_key: str, request_id: str) -> str:
    """Where a script records its outcome under ``request_id``: in the hash slot of
    ``first_key`` (one of the script's own keys), so the script still touches one slot.

    ``{swarm}:tasks`` gives ``{swarm}:req:<id>``; ``swarm:state:{s1}`` gives
    ``swarm:state:{s1}:req:<id>``. Raises ConfigError when ``first_key`` has no hash tag.
    """
    start = first_key.find("{")
    end = first_key.find("}", start + 1) if start >= 0 else -1
    if end < 0:
        raise ConfigError(f"key {first_key!r} has no hash tag")
    return f"{first_key[: end + 1]}:req:{check_id(request_id, 'request id')}"
