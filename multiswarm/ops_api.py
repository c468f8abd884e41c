"""Operator reads and actions of the :class:`~multiswarm.api.Multiswarm` facade: status, leader,
health, workers and agents, statistics, circuit breakers, resource pools and votes.

Plain async functions over a :class:`~multiswarm.api_types.Host`, bound as facade methods; the
data come from the components' public methods.
"""

from __future__ import annotations

import asyncio
import time

from multiswarm.api_types import (
    AgentInfo,
    HealthReport,
    Host,
    LeaderInfo,
    Part,
    Statistics,
    StatusReport,
    SwarmStatus,
    TaskCounters,
    WorkerStatus,
)
from multiswarm.breakers import BreakerRegistry, BreakerState
from multiswarm.consensus import Consensus, VoteResult
from multiswarm.coordinator import current_leader
from multiswarm.deployment import DeploymentConfig, current, store_timings
from multiswarm.errors import NotFound, RedisUnavailable
from multiswarm.messages import PRIORITY_NAMES, Task, WorkerInfo
from multiswarm.partition_api import fan_out, on_swarm
from multiswarm.partition_views import (
    combine_outcomes,
    merge_leaders,
    merge_pools,
    split_capacity,
    sum_counts,
    vacant,
)
from multiswarm.resources import PoolUsage, ResourcePools

#: A member is stale when its worker has not reported for this long, in ms (DESIGN.md: 30 s).
AGENT_TIMEOUT_MS = 30_000
#: Member health codes (as workers report them) -> names.
HEALTH_NAMES = ("healthy", "degraded", "unhealthy", "dead")
#: Longest wait of :func:`health` for Redis, in seconds: a health probe answers fast or fails.
HEALTH_TIMEOUT_S = 2.0
#: Most running task records :func:`status` and :func:`list_agents` read to say what runs where.
RUNNING_READ = 10_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _beat_ms_ago(w: WorkerInfo, now_ms: int) -> int:
    return now_ms - (w.beat_ms or w.registered_ms)


async def _running(host: Part) -> list[Task]:
    """The running task records: live, where a worker's report is up to a heartbeat old."""
    return await host.tasks.list("running", RUNNING_READ)


def _by_agent(w: WorkerInfo, running: list[Task]) -> dict[str, list[str]]:
    """Agent id -> ids of the tasks it runs, on worker ``w``.

    A task record names its agent once the worker has recorded it; until then a task of a swarm
    that has exactly one Python agent on ``w`` is that agent's (no other could run it), and one
    of a swarm with several agents is not attributed.
    """
    agents_of: dict[str, list[str]] = {}
    for agent_id, a in w.agent_states.items():
        if a.get("kind", "python") == "python":
            agents_of.setdefault(str(a.get("swarm")), []).append(agent_id)
    out: dict[str, list[str]] = {}
    for t in running:
        if t.worker != w.id:
            continue
        candidates = agents_of.get(t.swarm, [])
        agent = t.agent or (candidates[0] if len(candidates) == 1 else "")
        if agent:
            out.setdefault(agent, []).append(t.id)
    return out


# -- who leads, what runs ----------------------------------------------------------------------
async def leader(host: Host) -> LeaderInfo | None:
    """Who holds the leader lease, with the ms left on it; None while it is vacant.

    With several coordination partitions: partition 0's leader (the lowest-numbered held
    one's while that is vacant) with every partition's in ``partitions``; None when all
    are vacant.

    Raises
    ------
    RedisUnavailable
        Redis did not answer within ``settings.reconnect_timeout_s``.
    """
    return merge_leaders(await fan_out(host, _leader))


async def _leader(host: Part) -> LeaderInfo | None:
    info, left = await current_leader(host.scripts, host.keys)
    if info is None:
        return None
    return LeaderInfo(
        holder=info.holder, host=info.host, pid=info.pid, epoch=info.epoch, lease_ms_left=left
    )


async def health(host: Host) -> HealthReport:
    """``ok`` when Redis answers within :data:`HEALTH_TIMEOUT_S` and a leader holds the lease
    (of every coordination partition, when there are several).

    Never raises for an unreachable Redis: that is ``ok=False`` with the reason.
    """
    try:
        now = await asyncio.wait_for(leader(host), HEALTH_TIMEOUT_S)
    except (RedisUnavailable, asyncio.TimeoutError, OSError) as e:
        return HealthReport(False, f"redis unavailable: {e or type(e).__name__}")
    if len(host.parts) == 1 or now is None:
        if now is None:
            return HealthReport(False, "no leader holds the lease")
        return HealthReport(True, f"leader {now.holder} epoch {now.epoch}")
    missing = vacant(now, len(host.parts))
    if missing:
        listed = ", ".join(map(str, missing))
        return HealthReport(False, f"no leader holds the lease of partitions {listed}")
    return HealthReport(
        True,
        "leaders "
        + ", ".join(f"p{p.partition} {p.holder} epoch {p.epoch}" for p in now.partitions),
    )


async def list_workers(host: Host) -> list[WorkerInfo]:
    """Every registered worker record (last heartbeat report included), by id (with several
    coordination partitions, a worker serving several is listed once per partition)."""
    if len(host.parts) == 1:
        return await host.registry.workers()
    each = await fan_out(host, lambda p: p.registry.workers())
    return sorted((w for workers in each for w in workers), key=lambda w: w.id)


async def status(host: Host) -> StatusReport:
    """Swarms (status, capacity, active tasks, paused), workers with their heartbeat age in ms
    and the tasks running on them, the leader, task counts per status and the task counters.

    What runs where comes from the task records (live), not from the workers' last heartbeat
    (up to one interval old).

    Raises
    ------
    RedisUnavailable
        Redis did not answer within ``settings.reconnect_timeout_s``.
    """
    now_ms = _now_ms()
    each = await fan_out(host, lambda p: _status_of(p, now_ms))
    return StatusReport(
        namespace=host.keys.ns,
        leader=await leader(host),
        swarms=sorted((s for one in each for s in one.swarms), key=lambda s: s.id),
        workers=[w for one in each for w in one.workers],
        tasks=sum_counts(one.tasks for one in each),
        counters=sum_counts(one.counters for one in each),
    )


async def _status_of(host: Part, now_ms: int) -> StatusReport:
    """One partition's part of :func:`status` (its ``leader`` left None)."""
    running = await _running(host)
    return StatusReport(
        namespace=host.keys.ns,
        leader=None,
        swarms=[
            SwarmStatus(
                id=s.id,
                status=s.status,
                capabilities=s.capabilities,
                priority=PRIORITY_NAMES.get(s.prio, str(s.prio)),
                active=s.active,
                capacity=s.capacity,
                paused=s.paused,
                hosts=s.host_workers,
                recoveries=s.recoveries,
            )
            for s in await host.registry.swarms()
        ],
        workers=[
            WorkerStatus(
                id=w.id,
                host=w.host,
                pid=w.pid,
                swarms=[x for x in w.swarms.split(",") if x],
                running=sum(1 for t in running if t.worker == w.id),
                tasks=[t.id for t in running if t.worker == w.id],
                beat_ms_ago=_beat_ms_ago(w, now_ms),
            )
            for w in await host.registry.workers()
        ],
        tasks=await host.tasks.counts(),
        counters=await host.tasks.stats(),
    )


async def list_agents(host: Host, swarm_id: str | None = None) -> list[AgentInfo]:
    """Every swarm member (Python agents and external processes), by worker then agent id; only
    ``swarm_id``'s when given.

    Health, failures and restarts are as its worker last reported them (up to a heartbeat
    old); the tasks it runs come from the task records (live), and a member running one is
    ``busy`` whatever the report said.
    """
    now_ms = _now_ms()
    each = await fan_out(host, lambda p: _agents_of(p, swarm_id, now_ms))
    return [a for agents in each for a in agents]


async def _agents_of(host: Part, swarm_id: str | None, now_ms: int) -> list[AgentInfo]:
    running = await _running(host)
    out = []
    for w in await host.registry.workers():
        age = _beat_ms_ago(w, now_ms)
        tasks = _by_agent(w, running)
        for agent_id, a in sorted(w.agent_states.items()):
            if swarm_id and a.get("swarm") != swarm_id:
                continue
            mine = tasks.get(agent_id, [])
            state = a.get("state")
            out.append(
                AgentInfo(
                    agent=agent_id,
                    swarm=a.get("swarm"),
                    worker=w.id,
                    kind=a.get("kind"),
                    state="busy" if mine and state in ("idle", None) else state,
                    tasks=mine,
                    health=HEALTH_NAMES[min(int(a.get("health", 0)), 3)],
                    failures=int(a.get("failures", 0)),
                    restarts=int(a.get("restarts", 0)),
                    pid=a.get("pid"),
                    stale=age > AGENT_TIMEOUT_MS,
                    reported_ms_ago=age,
                )
            )
    return out


async def statistics(host: Host) -> Statistics:
    """Task counts per status now, the task counters since the start, swarms per status and
    the leader."""
    counters = sum_counts(await fan_out(host, lambda p: p.tasks.stats()))
    known = {f: counters.get(f, 0) for f in TaskCounters.__struct_fields__ if f != "failed"}
    swarms: dict[str, int] = {}
    for each in await fan_out(host, lambda p: p.registry.swarms()):
        for s in each:
            swarms[s.status] = swarms.get(s.status, 0) + 1
    return Statistics(
        tasks=sum_counts(await fan_out(host, lambda p: p.tasks.counts())),
        counters=TaskCounters(failed=known["retries"] + known["dead"], **known),
        swarms=swarms,
        leader=await leader(host),
    )


# -- breakers ----------------------------------------------------------------------------------
async def list_breakers(host: Host) -> list[BreakerState]:
    """Every circuit breaker (state, failures, trials, opens, last error), by name, as the next
    call would find it (server clock).

    Raises
    ------
    MessageDecodeError
        A stored breaker record is corrupt.
    """
    return list((await BreakerRegistry(host.scripts, host.keys).states()).values())


async def reset_breaker(host: Host, name: str) -> bool:
    """Force breaker ``name`` closed (counts cleared, calls in flight no longer count).

    Returns
    -------
    bool
        False when there is no such breaker.

    Raises
    ------
    InvalidIdError
        Malformed name.
    """
    return await BreakerRegistry(host.scripts, host.keys).reset(name)


async def reset_breakers(host: Host) -> list[str]:
    """Force every breaker closed; returns their names, sorted."""
    return await BreakerRegistry(host.scripts, host.keys).reset_all()


# -- resource pools ----------------------------------------------------------------------------
async def list_resources(host: Host) -> list[PoolUsage]:
    """Every pool (capacity, allocated, free, holders), by type, read in one atomic step.

    With several coordination partitions each holds a share of every pool (its swarms
    allocate from it); this adds them up, one atomic read per partition."""
    if len(host.parts) == 1:
        return list((await ResourcePools(host.scripts, host.keys).usage()).values())
    return merge_pools(await fan_out(host, lambda p: ResourcePools(p.scripts, p.keys).usage()))


async def init_resource_pool(host: Host, type: str, capacity: int) -> str:
    """Create pool ``type`` with ``capacity`` (cpu in millicores, memory in MiB, other types in
    their own unit), or change its capacity.

    Returns
    -------
    str
        ``created`` | ``resized`` | ``unchanged``.

    Raises
    ------
    InvalidIdError
        ``type`` is not an id.
    BadRequest
        ``capacity`` is below what is allocated now.
    ValueError
        ``capacity`` is not an integer in [0, 2**53).

    With several coordination partitions the capacity is split among them: each gets what
    its swarms hold now plus an even part of the rest (a partition's swarms allocate from
    its share only; decision 47).
    """
    if len(host.parts) == 1:
        return await ResourcePools(host.scripts, host.keys).init_pool(type, capacity)
    pools = [ResourcePools(p.scripts, p.keys) for p in host.parts]
    used = [0] * len(pools)
    for k, pool in enumerate(pools):
        usage = (await pool.usage([type])).get(type)
        used[k] = usage.allocated if usage else 0
    shares = split_capacity(capacity, used)
    return combine_outcomes([await pool.init_pool(type, n) for pool, n in zip(pools, shares)])


async def release_resources(host: Host, swarm_id: str) -> dict[str, int]:
    """Give back everything ``swarm_id`` holds, in every pool; returns type -> amount."""
    if len(host.parts) == 1:
        return await ResourcePools(host.scripts, host.keys).release_all(swarm_id)
    try:
        return await on_swarm(
            host, swarm_id, lambda p: ResourcePools(p.scripts, p.keys).release_all(swarm_id)
        )
    except NotFound:
        return {}  # placed nowhere: holds nothing (its release came with its end)


# -- votes -------------------------------------------------------------------------------------
async def list_votes(host: Host, limit: int = 20) -> list[VoteResult]:
    """The ``limit`` newest proposals still kept, with status and counts."""
    return await Consensus(host.scripts, host.keys, sender="operator").proposals(limit)


async def get_vote(host: Host, proposal_id: str) -> VoteResult:
    """One proposal: every vote, equivocators, voters still missing (times in server ms).

    Raises
    ------
    NotFound
        No such proposal (or it expired).
    """
    return await Consensus(host.scripts, host.keys, sender="operator").tally(proposal_id)


async def deployment(host: Host) -> DeploymentConfig | None:
    """The deployment-wide timings every process adopts (heartbeat, leader lease, task lease,
    result TTL, in ms), who stored them and when; None before any process stored them."""
    return await current(host.client, host.settings)


async def configure_deployment(host: Host, **timings: int) -> DeploymentConfig:
    """Change deployment-wide timings (``heartbeat_timeout_ms``, ``lease_ms``,
    ``task_lease_ms``, ``result_ttl_ms``, in ms). Running processes keep theirs until they
    restart; processes started afterwards adopt the new ones.

    Raises
    ------
    ConfigError
        An unknown name or a value below 1 ms.
    """
    return await store_timings(host.client, host.settings, **timings)
