"""What a facade remembers to route calls to coordination partitions (decision 47), and how
it chooses a partition for new tasks. No Redis here: :mod:`multiswarm.partition_api` reads
and fills these caches.

Swarms and tasks never move between partitions while they exist (a swarm's placement is
permanent until it is deleted; a task lives where it was submitted), so their routes are
kept until evicted; what a new task's choice depends on (which partition offers which
capabilities, how many tasks wait in each) changes, so it is kept a short while only.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence

#: Most task routes a facade remembers (id -> partition), least recently used dropped first.
TASK_ROUTES = 100_000
#: Most swarm routes a facade remembers (id -> partition), the oldest remembered dropped first:
#: a long-lived facade (``run api``) met every swarm ever made, archived ones included.
SWARM_ROUTES = 100_000
#: How long the partitions' capability counts are reused, in seconds.
CAPABILITIES_TTL_S = 1.0
#: How long the partitions' backlogs are reused, in seconds (counted up locally meanwhile).
BACKLOG_TTL_S = 0.5


class BoundedRoutes(OrderedDict[str, int]):
    """Id -> partition, at most ``bound`` of them: setting one past it drops the oldest set."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound

    def __setitem__(self, key: str, value: int) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.bound:
            self.popitem(last=False)


class Routes:
    """The routing caches of one facade: swarm and task routes, the partitions' capability
    counts and backlogs, the round-robin cursor of ties."""

    def __init__(
        self, partitions: int, *, task_routes: int = TASK_ROUTES, swarm_routes: int = SWARM_ROUTES
    ) -> None:
        self.partitions = partitions
        self.swarms = BoundedRoutes(swarm_routes)
        self.tasks: OrderedDict[str, int] = OrderedDict()
        self.task_routes = task_routes
        self.caps: list[dict[str, int]] | None = None
        self.caps_at = 0.0
        self.backlog: list[int] | None = None
        self.backlog_at = 0.0
        self.rr = 0
        #: held while capabilities or backlogs are read: concurrent submissions wait for one
        #: read instead of each reading and overwriting the others' counts
        self.reading = asyncio.Lock()

    # -- swarms and tasks ---------------------------------------------------------------------
    def task(self, task_id: str) -> int | None:
        """The remembered partition of a task (marks it recently used), or None."""
        k = self.tasks.get(task_id)
        if k is not None:
            self.tasks.move_to_end(task_id)
        return k

    def remember_tasks(self, task_ids: Collection[str], partition: int) -> None:
        for tid in task_ids:
            self.tasks[tid] = partition
            self.tasks.move_to_end(tid)
        while len(self.tasks) > self.task_routes:
            self.tasks.popitem(last=False)

    # -- what a choice reads --------------------------------------------------------------------
    def fresh_caps(self, now: float | None = None) -> list[dict[str, int]] | None:
        now = time.monotonic() if now is None else now
        return (
            self.caps if self.caps is not None and now - self.caps_at < CAPABILITIES_TTL_S else None
        )

    def set_caps(self, caps: list[dict[str, int]]) -> None:
        self.caps, self.caps_at = caps, time.monotonic()

    def fresh_backlog(self, now: float | None = None) -> list[int] | None:
        now = time.monotonic() if now is None else now
        fresh = self.backlog is not None and now - self.backlog_at < BACKLOG_TTL_S
        return self.backlog if fresh else None

    def set_backlog(self, backlog: list[int]) -> None:
        self.backlog, self.backlog_at = list(backlog), time.monotonic()

    def submitted(self, partition: int, count: int) -> None:
        """Count ``count`` new tasks into the cached backlog of ``partition``, so submissions
        in quick succession spread before the next read."""
        if self.backlog is not None:
            self.backlog[partition] += count

    def choose(
        self, needed: Collection[str], caps: Sequence[dict[str, int]], backlog: Sequence[int]
    ) -> int:
        """The partition for new tasks needing capabilities ``needed``: among the partitions
        whose placed swarms cover them all (all partitions when none does), the one with the
        smallest backlog; ties go round robin."""
        return choose_partition(needed, caps, backlog, self._next_rr())

    def _next_rr(self) -> int:
        self.rr += 1
        return self.rr


def covering(needed: Collection[str], caps: Sequence[dict[str, int]]) -> list[int]:
    """The partitions where every capability of ``needed`` is offered by some placed swarm
    (with nothing needed: the partitions holding any swarm)."""
    return [
        k
        for k, offered in enumerate(caps)
        if offered.get("*", 0) > 0 and all(offered.get(c, 0) > 0 for c in needed)
    ]


def choose_partition(
    needed: Collection[str], caps: Sequence[dict[str, int]], backlog: Sequence[int], turn: int
) -> int:
    """Pure choice of :meth:`Routes.choose`; ``turn`` breaks ties (the ``turn``-th tied one,
    modulo their number)."""
    candidates = covering(needed, caps) or list(range(len(backlog)))
    least = min(backlog[k] for k in candidates)
    tied = [k for k in candidates if backlog[k] == least]
    return tied[turn % len(tied)]
