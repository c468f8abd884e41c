"""``GET /metrics``: Prometheus text format built from Redis state, read through the facade at
each scrape, so every replica of the API reports the same numbers.

No metric lives in this process: :func:`gather` reads one :class:`Snapshot`, :func:`exposition`
writes it with a collector registered on a fresh ``CollectorRegistry`` (nothing global, nothing
left behind between scrapes). Counters are Redis's own counters (``<ns>:tasks:stats``), so they
survive API restarts and only reset when the namespace is wiped.

``multiswarm_tasks_failed_total`` is not exported: Redis keeps no count of failed attempts
(a failed attempt is counted as a retry, or as dead when it was the last), and a sum of other
counters would double-count tasks dead-lettered for other reasons.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

#: Content type of the text exposition format (version 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Value of ``multiswarm_breaker_state`` per state.
BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
#: Redis counter (``<ns>:tasks:stats`` field) behind each ``*_total`` metric.
COUNTERS = {
    "multiswarm_tasks_submitted": ("submitted", "Tasks submitted"),
    "multiswarm_tasks_completed": ("completed", "Tasks completed"),
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
        Entries in the dead-letter stream.
    """

    tasks: dict[str, int]
    counters: dict[str, int]
    leader_epoch: int | None
    lease_left_s: float
    swarms: list[SwarmSample]
    worker_beat_age_s: dict[str, float]
    breakers: dict[str, str]
    dead_letters: int


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
            "multiswarm_dead_letters", "Entries in the dead-letter stream", value=s.dead_letters
        )


def exposition(snap: Snapshot) -> bytes:
    """``snap`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)
