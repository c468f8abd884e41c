"""Which agent of a swarm runs which claimed task, and the node's working memory.

Per batch of claimed tasks the worker asks the Numba scheduling kernel
(:func:`multiswarm.kernels.scheduling.schedule`) for an agent per task, by the swarm's agent
strategy (round_robin, least_loaded, load_balanced, capability), over the agents' real state:
load (tasks in flight), capacity (the agent's concurrency), capability masks (bits of the
swarm's capabilities) and health from consecutive failures (healthy 0, degraded 1-2, unhealthy
3-5, dead 6+; DESIGN.md, Resilience), and the tasks' priorities and required capabilities.

The task's input (payload and dependency results) is copied into a region of the node's pool
(:class:`multiswarm.kernels.memory.RegionPool`, 28 MiB in 64 KiB regions by default, in a
shared-memory segment), pinned while it runs; from :data:`SHARED_INPUT_BYTES` on, the agent
reads it there by offset instead of receiving it through its pipe. An input larger than the
agent's share of the pool can never fit: its task is dead-lettered with that reason. One that
does not fit for now (a fragmented pool) is handed back. The pool's use is reported to the
registry so the leader's least_loaded choice sees memory load.

Numba, and NumPy too, are imported here on first use: a worker starts its agent processes
before it pays for them, places its first batches by the kernel's plain-Python definition on
lists, and loads NumPy and the kernels when first idle (:mod:`.kernel_warmup`, decision 87).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from multiswarm.agent_runtime import ShmRef
from multiswarm.agents import AgentProcess
from multiswarm.errors import InvalidArgumentError
from multiswarm.kernel_warmup import kernels_ready
from multiswarm.kernel_warmup import warm_up as warm_up  # its former home: still importable
from multiswarm.placement_kernel import constant, schedule_batch

if TYPE_CHECKING:
    from multiswarm.kernels.memory import RegionPool

#: Default node pool (DESIGN.md, Memory regions).
POOL_BYTES = 28 * 1024 * 1024
#: Task inputs (payload and dependency results) from this size on reach agents through the
#: node's shared-memory pool, by offset, rather than through their pipe. Bytes.
SHARED_INPUT_BYTES = 64 * 1024
REGION_BYTES = 64 * 1024
#: Agent strategies of the scheduling kernel.
AGENT_STRATEGIES = ("round_robin", "least_loaded", "load_balanced", "capability")


def health_code(consecutive_failures: int) -> int:
    """0 healthy (0), 1 degraded (1-2), 2 unhealthy (3-5), 3 dead (6+)."""
    if consecutive_failures == 0:
        return 0
    if consecutive_failures <= 2:
        return 1
    return 2 if consecutive_failures <= 5 else 3


class Counted(NamedTuple):
    """An input admitted by count only: one under :data:`SHARED_INPUT_BYTES`, which its agent
    receives through its pipe (:class:`NodeMemory`)."""

    agent: int
    regions: int


class NodeMemory:
    """The worker's region pool; agent ids are indexes into the worker's agent list.

    With ``shared``, the pool is a shared-memory segment: agents read large inputs there by
    offset (:meth:`refs`) instead of receiving them through their pipe. :meth:`close` unlinks it.
    An input under :data:`SHARED_INPUT_BYTES`, which its agent receives through the pipe and
    never reads in the pool, is only counted against its agent's limit (with what the agent
    holds in the pool) and in :meth:`load` (:class:`Counted`, ~2 µs), not placed: placing it
    cost ~25 µs of worker CPU a task (decision 58). Without ``kernels`` (a worker serving
    before Numba is loaded), until :meth:`use_kernels` the pool runs on the plain-Python
    reference kernels (same answers, ~80-170 µs an allocation); the pool itself (NumPy, the
    shared segment and its resource tracker process) is made when first needed: a large
    input, :meth:`use_kernels` or :attr:`pool`.

    Raises
    ------
    KernelInputError
        ``total_bytes`` or ``region_bytes`` not positive, or not a multiple of the other.
    """

    def __init__(
        self,
        total_bytes: int = POOL_BYTES,
        region_bytes: int = REGION_BYTES,
        n_agents: int = 1,
        *,
        shared: bool = False,
        kernels: bool = True,
    ) -> None:
        from multiswarm.kernels.errors import KernelInputError

        if min(total_bytes, region_bytes) <= 0 or total_bytes % region_bytes:
            raise KernelInputError(
                f"pool of {total_bytes} bytes in regions of {region_bytes} bytes: both must be "
                "positive, the pool a multiple of the region"
            )
        self.total_bytes, self.region_bytes = total_bytes, region_bytes
        self._shared, self._n_agents = shared, n_agents
        #: regions each agent may hold (the pool's limits once it exists)
        self.per_agent = max(1, max(region_bytes, total_bytes // max(1, n_agents)) // region_bytes)
        self._pool: RegionPool | None = None
        self.refused = 0
        self.kernels = kernels
        #: agent -> regions of its :class:`Counted` inputs
        self.counted: dict[int, int] = {}
        #: allocation id -> (agent, regions) of the inputs placed in the pool
        self.placed: dict[int, tuple[int, int]] = {}
        if kernels:
            self.pool  # noqa: B018 - made now, as before the lazy pool

    @property
    def pool(self) -> RegionPool:
        """The region pool, made on first access."""
        if self._pool is None:
            from multiswarm.kernels.memory import RegionPool

            pool = RegionPool(
                self.total_bytes,
                self.region_bytes,
                policy="lru",
                shared=self._shared,
                backend="numba" if self.kernels else "python",
            )
            for agent in range(self._n_agents):
                pool.set_limit(agent, max_regions=self.per_agent)
            self._pool = pool
        return self._pool

    def use_kernels(self) -> None:
        """Run the pool on the Numba kernels from now on (load them first:
        :func:`~multiswarm.kernel_warmup.warm_up`).
        Both backends work on the same region table, so no state moves."""
        from multiswarm.kernels.pool_ops import load_ops

        if self._pool is None:
            self.kernels = True
            self.pool  # noqa: B018 - made on the kernels
            return
        self._pool._ops = load_ops("numba")
        self.kernels = True

    def admit(self, agent: int, data: list[bytes]) -> Any | None:
        """Copy ``data`` into a pinned allocation of ``agent``; None when it does not fit."""
        nbytes = sum(map(len, data)) or 1
        regions = -(-nbytes // self.region_bytes)
        if nbytes < SHARED_INPUT_BYTES:  # every small input (one a task): no import here
            return self._count(agent, regions)
        from multiswarm.kernels.errors import PoolError

        if self.counted.get(agent) and not self._within(agent, regions):
            self.refused += 1
            return None
        try:
            alloc = self.pool.allocate(agent, nbytes, pinned=True)
        except PoolError:
            self.refused += 1
            return None
        self.placed[alloc.id] = (agent, alloc.n_regions)
        view = self.pool.view(alloc)
        offset = 0
        for d in data:
            view[offset : offset + len(d)] = d
            offset += len(d)
        return alloc

    def _within(self, agent: int, regions: int) -> bool:
        """Whether ``agent`` may hold ``regions`` more, counted and placed inputs together."""
        limit = self.per_agent if self._pool is None else self._pool.limit(agent)
        if limit is None:
            return True
        held = self.counted.get(agent, 0) + regions
        if self.placed:  # large inputs are rare: only then look at them
            held += sum(n for a, n in self.placed.values() if a == agent)
        return held <= limit

    def _count(self, agent: int, regions: int) -> Counted | None:
        if not self._within(agent, regions):
            self.refused += 1
            return None
        self.counted[agent] = self.counted.get(agent, 0) + regions
        return Counted(agent, regions)

    def share_bytes(self, agent: int) -> int:
        """The most input ``agent`` may ever hold, in bytes: its limit in whole regions."""
        regions = self.per_agent if self._pool is None else self._pool.limit(agent)
        if regions is None:
            return self.total_bytes
        return min(regions * self.region_bytes, self.total_bytes)

    def release(self, alloc: Any) -> None:
        if isinstance(alloc, Counted):
            self.counted[alloc.agent] -= alloc.regions
            return
        self.placed.pop(alloc.id, None)
        self.pool.free(alloc)

    def refs(self, alloc: Any, sizes: Sequence[int]) -> list[tuple[str, str, int, int]]:
        """Where each part admitted into ``alloc`` lies, as agents read it
        (:data:`multiswarm.agent_runtime.ShmRef`). Only for a shared pool."""
        name = self.pool.shm_name
        if name is None:
            raise InvalidArgumentError("refs of a process-local pool: agents cannot read it")
        out, offset = [], int(alloc.offset)
        for size in sizes:
            out.append(("shm", name, offset, size))
            offset += size
        return out

    @property
    def shared(self) -> bool:
        return self._shared

    def close(self) -> None:
        """Release the pool (unlink a shared segment). Idempotent."""
        if self._pool is not None:
            self._pool.close()

    def collect(self, agents: list[int]) -> int:
        """Free everything held by agents whose process died."""
        if self._pool is None:
            return 0
        freed = self._pool.gc(agents)
        for alloc in freed:
            self.placed.pop(alloc.id, None)
        return len(freed)

    def load(self) -> tuple[int, int, float]:
        """(bytes used, bytes total, used share in [0, 1])."""
        used = sum(self.counted.values()) * self.region_bytes
        if self._pool is not None:
            used += self._pool.usage().used_bytes
        used = min(used, self.total_bytes)
        return used, self.total_bytes, used / self.total_bytes


class SwarmAgents:
    """The agent processes of one swarm on this worker and the placement of tasks on them.

    Parameters
    ----------
    agents:
        The swarm's agent processes; ``first_index`` is the first one's id in the node pool
        (the others follow it; an agent added later brings its own: :meth:`add`).
    strategy:
        One of :data:`AGENT_STRATEGIES`.
    concurrency:
        Tasks one agent runs at once: its capacity in the scheduling kernel.
    capabilities:
        The swarm's capabilities, in order: bit ``i`` of a capability mask is the ``i``-th
        (:func:`capability_bits`).
    """

    def __init__(
        self,
        agents: list[AgentProcess],
        first_index: int,
        strategy: str,
        concurrency: int = 1,
        capabilities: Sequence[str] = (),
    ) -> None:
        if strategy not in AGENT_STRATEGIES:
            raise InvalidArgumentError(
                f"unknown agent strategy {strategy!r}; one of {AGENT_STRATEGIES}"
            )
        self.agents = agents
        #: per agent, its id in the node's memory pool: unique among the worker's agents
        self.nodes = [first_index + i for i in range(len(agents))]
        self.strategy = strategy
        self.concurrency = concurrency
        self.bits = capability_bits(capabilities)
        every = capability_mask(self.bits, self.bits)
        #: tasks in flight per agent
        self.load = [0] * len(agents)
        #: capability mask per agent: every Python agent holds all of the swarm's capabilities
        self.caps = [every] * len(agents)
        #: members taken out of service for good (replaced or scaled down); indexes stay stable
        self.retired = [False] * len(agents)
        self.cursor = 0
        #: ``caps`` as the kernel's array, made again when an agent is added
        self._caps: Any = None
        self._masks: dict[str, int] = {}

    def add(self, agent: AgentProcess, node: int) -> int:
        """A new member (scale-up or replacement) whose id in the node pool is ``node`` (not
        one of another agent of the worker, this swarm's or another's); returns its index."""
        self.agents.append(agent)
        self.nodes.append(node)
        self.load.append(0)
        self.caps.append(capability_mask(self.bits, self.bits))
        self._caps = None
        self.retired.append(False)
        return len(self.agents) - 1

    def usable(self, index: int) -> bool:
        agent = self.agents[index]
        return (
            not self.retired[index] and agent.alive and health_code(agent.consecutive_failures) <= 1
        )

    def placeable(self) -> int:
        """Free slots (concurrency minus tasks in flight) of agents that may take work
        (healthy or degraded): how many tasks to claim."""
        return self.slots()[0]

    def slots(self) -> tuple[int, int]:
        """Free slots of the agents that may take work (:meth:`placeable`) and all their
        slots (their number times the concurrency), each agent's health looked at once."""
        usable = [n for i, n in enumerate(self.load) if self.usable(i)]
        return sum(max(0, self.concurrency - n) for n in usable), len(usable) * self.concurrency

    def place_claimed(self, claimed: Sequence[Any]) -> list[int]:
        """:meth:`place` for claimed tasks, by their priority and required capabilities where
        the claim reply carries them (``prio``, ``caps``); else in claim order (the queue's
        priority order) with the swarm's capabilities."""
        prios = [int(getattr(c, "prio", 1)) for c in claimed]
        return self.place(prios, [str(getattr(c, "caps", "")) for c in claimed])

    def place(self, priorities: Sequence[int], capabilities: Sequence[str] = ()) -> list[int]:
        """Agent index (within the swarm) per task of a claimed batch, ``-1`` where none can
        take it, by the scheduling kernel over the agents' real state.

        Parameters
        ----------
        priorities:
            Per task, the record's priority code (0 high, 1 normal, 2 low; lower is more
            urgent); also gives the batch size. The kernel places the most urgent first.
        capabilities:
            Per task, its required capabilities (csv); a task needing one the swarm's agents
            lack is not placed. Default: none required.
        """
        n = len(priorities)
        masks = [self._mask(c) for c in capabilities[:n]]
        health = [
            health_code(a.consecutive_failures) if self.usable(i) else 3
            for i, a in enumerate(self.agents)
        ]
        picks = (
            self._place_kernel(priorities, masks, health)
            if kernels_ready()
            else self._place_lists(priorities, masks, health)
        )
        for i in picks:
            if i >= 0:
                self.load[i] += 1
        return picks

    def _place_kernel(
        self, priorities: Sequence[int], masks: list[int], health: list[int]
    ) -> list[int]:
        """:meth:`place` by the scheduling kernel, once it is loaded."""
        import numpy as np

        n, m = len(priorities), len(self.agents)

        # higher is more urgent for the kernel; one array call per input (element-wise writes
        # into NumPy arrays cost ~1 µs each)
        prio = np.array([-p for p in priorities], np.int64)
        need = np.array(masks + [0] * (n - len(masks)), np.uint64)
        if self._caps is None or self._caps.shape[0] != m:
            self._caps = np.array(self.caps, np.uint64)
        assignment, cursor = schedule_batch(
            prio,
            need,
            constant(n, 1.0),
            np.array(self.load, np.float64),
            constant(m, float(self.concurrency)),
            self._caps,
            np.array(health, np.int8),
            self.strategy,
            self.cursor,
        )
        self.cursor = cursor
        picks: list[int] = assignment.tolist()
        return picks

    def _place_lists(
        self, priorities: Sequence[int], masks: list[int], health: list[int]
    ) -> list[int]:
        """The kernel's placement by its plain-Python definition on lists, before the kernels
        (and NumPy, ~0.1 s of CPU) are loaded: the same answer (tests/kernels compare the
        definition with the kernel), without NumPy on the start-up's path (decision 87)."""
        from multiswarm.kernels.constants import STRATEGIES
        from multiswarm.kernels.reference_lists import schedule_lists

        n, m = len(priorities), len(self.agents)
        picks, _reason, _load, cursor, _order = schedule_lists(
            [-p for p in priorities],
            masks + [0] * (n - len(masks)),
            [1.0] * n,
            [float(x) for x in self.load],
            [float(self.concurrency)] * m,
            list(self.caps),
            health,
            [[] for _ in range(n)],
            STRATEGIES[self.strategy],
            self.cursor % m if m else 0,
        )
        self.cursor = cursor
        return picks

    def _mask(self, caps: str) -> int:
        """A task's capability mask, kept by its csv text (a swarm's tasks share few)."""
        if not caps:
            return 0
        mask = self._masks.get(caps)
        if mask is None:
            if len(self._masks) >= 256:
                self._masks.clear()
            mask = self._masks[caps] = capability_mask(self.bits, caps.split(","))
        return mask

    def done(self, index: int) -> None:
        self.load[index] = max(0, self.load[index] - 1)


#: The capability bit no agent holds: it marks a task needing a capability its swarm lacks.
FOREIGN_BIT = 63


def capability_bits(capabilities: Sequence[str]) -> dict[str, int]:
    """Bit per capability of a swarm, in order; from the 64th on, ``-1`` (no bit: every agent
    holds those, so they are not checked)."""
    names = dict.fromkeys(capabilities)
    return {c: (i if i < FOREIGN_BIT else -1) for i, c in enumerate(names)}


def capability_mask(bits: dict[str, int], names: Iterable[str]) -> int:
    """The mask of ``names`` over a swarm's capability ``bits``; a name the swarm does not know
    sets :data:`FOREIGN_BIT`."""
    mask = 0
    for name in names:
        bit = bits.get(name, FOREIGN_BIT)
        if bit >= 0:
            mask |= 1 << bit
    return mask


def agent_inputs(
    memory: NodeMemory, alloc: Any, size: int, payload: bytes, deps: dict[str, bytes]
) -> tuple[bytes | ShmRef, dict[str, bytes | ShmRef]]:
    """What the agent is sent: the input's bytes, or, from :data:`SHARED_INPUT_BYTES` on, where
    :meth:`NodeMemory.admit` put them in the shared pool (the agent reads them in place)."""
    if size < SHARED_INPUT_BYTES or not memory.shared:
        return payload, dict(deps)
    refs = memory.refs(alloc, [len(payload), *(len(d) for d in deps.values())])
    return refs[0], dict(zip(deps, refs[1:]))
