"""``GET /metrics``: Prometheus text format built from Redis state, read through the facade at
each scrape, so every replica of the API reports the same numbers.

No metric lives in this process: :func:`gather` reads one :class:`Snapshot`, :func:`exposition`
writes it with a collector registered on a fresh ``CollectorRegistry`` (nothing global, nothing
left behind between scrapes). Counters are Redis's own counters (``<ns>:tasks:stats``), so they
survive API restarts and only reset when the namespace is wiped.

``multiswarm_tasks_failed_total`` counts failed executions. Redis has no counter of its own for
them: the facade derives it as ``retries + dead``, which is exact because every failed
execution is either retried (``retries``) or the last one (``dead``), and a task ends dead in no
other way (lib/02_tasks.lua, ``fail_attempt``). ``multiswarm_dead_letters`` counts refused
messages (the messaging dead-letter stream, ``dlq`` in ``<ns>:messages:stats``); dead tasks are
``multiswarm_tasks{status="dead"}`` and ``multiswarm_tasks_dead_total``.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from multiswarm.api import Multiswarm

#: Content type of the text exposition format (as prometheus_client writes it).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Value of ``multiswarm_breaker_state`` per state.
BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
#: Redis counter (``<ns>:tasks:stats`` field) behind each ``*_total`` metric.
COUNTERS = {
    "multiswarm_tasks_submitted": ("submitted", "Tasks submitted"),
    "multiswarm_tasks_completed": ("completed", "Tasks completed"),
    "multiswarm_tasks_failed": ("failed", "Failed executions (retried or the last)"),
    "multiswarm_tasks_dead": ("dead", "Tasks dead-lettered (attempts exhausted or permanent)"),
    "multiswarm_task_retries": ("retries", "Failed attempts scheduled for a retry"),
}


class SwarmSample(msgspec.Struct, frozen=True):
    id: str
    status: str
    active: int
    capacity: int


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What one scrape reports, read from Redis through the facade.

    Attributes
    ----------
    tasks:
        Tasks per status, now.
    counters:
        Redis's task counters (``submitted``, ``completed``, ``dead``, ``retries``...).
    leader_epoch:
        Fencing epoch of the current leader, None when nobody leads.
    lease_left_s:
        Seconds left on the leader's lease (0 when nobody leads).
    swarms:
        Every swarm.
    worker_beat_age_s:
        Worker id -> seconds since its last heartbeat.
    breakers:
        Breaker name -> state (``closed`` | ``half_open`` | ``open``).
    dead_letters:
        Messages refused and dead-lettered since the namespace was created.
    partition_epochs:
        With several coordination partitions: partition -> fencing epoch of its leader (0:
        vacant); empty with one.
    """

    tasks: dict[str, int]
    counters: dict[str, int]
    leader_epoch: int | None
    lease_left_s: float
    swarms: list[SwarmSample]
    worker_beat_age_s: dict[str, float]
    breakers: dict[str, str]
    dead_letters: int
    partition_epochs: dict[int, int] = {}


class _SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        tasks = GaugeMetricFamily("multiswarm_tasks", "Tasks per status", labels=["status"])
        for status, n in sorted(s.tasks.items()):
            tasks.add_metric([status], n)
        yield tasks
        for name, (field, text) in COUNTERS.items():
            yield CounterMetricFamily(name, text, value=s.counters.get(field, 0))
        yield GaugeMetricFamily(
            "multiswarm_leader_epoch",
            "Fencing epoch of the leader (0: nobody leads)",
            value=s.leader_epoch or 0,
        )
        yield GaugeMetricFamily(
            "multiswarm_leader_lease_seconds_left",
            "Seconds left on the leader's lease",
            value=s.lease_left_s,
        )
        if s.partition_epochs:
            parts = GaugeMetricFamily(
                "multiswarm_partition_leader_epoch",
                "Fencing epoch of each coordination partition's leader (0: vacant)",
                labels=["partition"],
            )
            for k, epoch in sorted(s.partition_epochs.items()):
                parts.add_metric([str(k)], epoch)
            yield parts
        active = GaugeMetricFamily(
            "multiswarm_swarm_active_tasks", "Tasks a swarm holds now", labels=["swarm"]
        )
        capacity = GaugeMetricFamily(
            "multiswarm_swarm_capacity", "Tasks a swarm may hold at once", labels=["swarm"]
        )
        per_status: dict[str, int] = {}
        for sw in s.swarms:
            active.add_metric([sw.id], sw.active)
            capacity.add_metric([sw.id], sw.capacity)
            per_status[sw.status] = per_status.get(sw.status, 0) + 1
        yield active
        yield capacity
        swarms = GaugeMetricFamily("multiswarm_swarms", "Swarms per status", labels=["status"])
        for status, n in sorted(per_status.items()):
            swarms.add_metric([status], n)
        yield swarms
        yield GaugeMetricFamily(
            "multiswarm_workers", "Registered workers", value=len(s.worker_beat_age_s)
        )
        age = GaugeMetricFamily(
            "multiswarm_worker_heartbeat_age_seconds",
            "Seconds since a worker's last heartbeat",
            labels=["worker"],
        )
        for worker, seconds in sorted(s.worker_beat_age_s.items()):
            age.add_metric([worker], seconds)
        yield age
        breakers = GaugeMetricFamily(
            "multiswarm_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            labels=["breaker"],
        )
        for name, state in sorted(s.breakers.items()):
            breakers.add_metric([name], BREAKER_STATES.get(state, -1.0))
        yield breakers
        yield GaugeMetricFamily(
            "multiswarm_dead_letters",
            "Messages refused and dead-lettered (malformed, forged, stale...)",
            value=s.dead_letters,
        )


async def gather(ms: Multiswarm) -> Snapshot:
    """One :class:`Snapshot`, read through the facade (several reads, not one transaction: a
    scrape may straddle a change, as any scrape of a moving system does)."""
    st = await ms.status()
    stats = await ms.statistics()
    breakers = await ms.list_breakers()
    refused = await ms.dead_letters(1)
    return Snapshot(
        tasks=st.tasks,
        counters=msgspec.structs.asdict(stats.counters),
        leader_epoch=st.leader.epoch if st.leader else None,
        lease_left_s=st.leader.lease_ms_left / 1000 if st.leader else 0.0,
        swarms=[SwarmSample(s.id, s.status, s.active, s.capacity) for s in st.swarms],
        worker_beat_age_s={w.id: max(0, w.beat_ms_ago) / 1000 for w in st.workers},
        breakers={b.name: b.state for b in breakers},
        dead_letters=refused.counts.get("dlq", 0),
        partition_epochs={
            p.partition: p.epoch for p in (st.leader.partitions if st.leader else [])
        },
    )


def exposition(snap: Snapshot) -> bytes:
    """``snap`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)
