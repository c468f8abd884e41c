"""The per-node worker: hosts swarms, their agents claim and run tasks.

A worker registers as host of its swarms (host_swarms.lua), beats every third of the heartbeat
timeout, claims tasks of its swarms only as fast as it has idle agents, runs each in an agent
process (:mod:`multiswarm.agents`), renews the lease of every running task every third of that
task's own lease, and records results idempotently. On SIGTERM it stops claiming, lets in-flight
tasks finish for ``grace_s``, hands back what is still running (release_tasks.lua) and leaves the
registry.

Each periodic duty is its own loop, so none delays another: heartbeats, lease renewals, progress
(state saving and reconciling members), supervision of members, the notification listener and
one claim loop per swarm (woken by assignments and finished runs; one safety net per worker
looks at all its queues every 2 s). A loop that raises anything it does not handle stops the whole worker:
it hands back its tasks, leaves the registry and fails with :class:`~multiswarm.errors.WorkerFailed`
naming the loop, rather than living on as a zombie that beats but claims or renews nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import msgspec

from multiswarm.agents import DEFAULT_ALLOWED, DEFAULT_IMPORTS, AgentProcess
from multiswarm.config import MAX_PREFETCH, Settings
from multiswarm.connection import connect
from multiswarm.errors import (
    HandlerError,
    InvalidArgumentError,
    MultiswarmError,
    NotFound,
    WorkerFailed,
)
from multiswarm.handlers import import_handlers
from multiswarm.kernel_warmup import kernels_ready, warm_up_when_idle
from multiswarm.keys import Keys
from multiswarm.memory_gate import MemoryGate
from multiswarm.messenger import SwarmMessenger
from multiswarm.placement import (
    AGENT_STRATEGIES,
    POOL_BYTES,
    NodeMemory,
    SwarmAgents,
    agent_inputs,
)
from multiswarm.registry import SwarmRegistry, SwarmSpec
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from multiswarm.supervisor import Backoff, ExternalMember
from multiswarm.tasks import Claimed, TaskStore
from multiswarm.worker_claims import WorkerClaims
from multiswarm.worker_liveness import HeldTask, WaitingClaim, log_run
from multiswarm.worker_metrics import WorkerMetrics
from multiswarm.worker_outcomes import GroupCommit
from multiswarm.worker_progress import ProgressWriter

log = logging.getLogger(__name__)


class Worker(WorkerClaims):
    """One worker process.

    Parameters
    ----------
    settings:
        Connection and timing settings.
    swarms:
        Swarms this worker hosts; each gets ``max_agents`` agent processes.
    worker_id:
        Unique id (default host-pid-random).
    allowed_handlers:
        Import-path prefixes of handlers this worker may run besides the registered ones
        (opt-in; by default none).
    imports:
        Modules to import, whose ``@multiswarm.handler`` functions this worker runs, besides
        :data:`~multiswarm.handlers.DEFAULT_IMPORTS` (the package's own).
    grace_s:
        On shutdown, how long in-flight tasks may still finish before they are handed back.
    agent_strategy:
        How claimed tasks are placed on a swarm's agents (:data:`AGENT_STRATEGIES`).
    pool_bytes:
        The node's working-memory pool (28 MiB), shared by all agents of this worker: a
        shared-memory segment where each task's input is admitted, and where agents read inputs
        of ``SHARED_INPUT_BYTES`` (64 KiB) and more in place instead of through their pipe.
    external:
        Swarm id -> command line of an external member (any executable) to run beside the
        swarm's Python agents, supervised the same way (:mod:`multiswarm.supervisor`).
    backoff:
        Restart policy of dead or unhealthy members (5 s doubling, 3 attempts, 60 s cooldown).
    check_s:
        How often members' processes are checked.
    metrics:
        This worker's histograms (:mod:`multiswarm.worker_metrics`; default: not collected).
    concurrency:
        Tasks each agent process runs at once (default ``settings.agent_concurrency``,
        ``MULTISWARM_AGENT_CONCURRENCY``, 1).
    prefetch:
        Tasks held claimed per agent slot beyond those running (default
        ``settings.agent_prefetch``, ``MULTISWARM_AGENT_PREFETCH``, 2; decision 93). Each
        hosted swarm's capacity (tasks assigned to or running in it at once) becomes at least
        its agents times ``concurrency`` times (1 + this).
    partition:
        The coordination partition of ``settings.partitions`` its swarms live in (decision 44;
        :func:`multiswarm.worker_partitions.run_workers` runs one worker per partition).

    Raises
    ------
    HandlerError
        A module of ``imports`` cannot be imported, or a prefix holds a comma.
    WorkerFailed
        From :meth:`run`, after a clean leave, when one of its loops raised.
    """

    def __init__(
        self,
        settings: Settings,
        swarms: Sequence[SwarmSpec],
        *,
        worker_id: str | None = None,
        allowed_handlers: Sequence[str] = DEFAULT_ALLOWED,
        grace_s: float = 10.0,
        agent_strategy: str = "least_loaded",
        pool_bytes: int = POOL_BYTES,
        external: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
        check_s: float = 1.0,
        concurrency: int | None = None,
        prefetch: int | None = None,
        imports: Sequence[str] = (),
        metrics: WorkerMetrics | None = None,
        partition: int = 0,
    ) -> None:
        self.settings = settings
        self.specs = list(swarms)
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.allowed = tuple(allowed_handlers)
        if any("," in p for p in self.allowed):
            raise HandlerError(f"a handler prefix holds a comma: {list(self.allowed)}")
        self.imports = tuple(dict.fromkeys([*DEFAULT_IMPORTS, *imports]))
        #: registered handler names: with the prefixes, what this worker advertises it can run
        self.handler_names = import_handlers(self.imports)
        self.grace_s = grace_s
        self.client = connect(settings)
        self.keys = Keys(settings.namespace, partition, settings.partitions)
        self.scripts = Scripts.for_settings(self.client, settings)
        self.tasks = TaskStore(self.scripts, self.keys)
        # a run posts its outcome while it is still among the runs under way
        self.outcomes = GroupCommit(self.tasks, self.id, lone=lambda: len(self._running) <= 1)
        self.registry = SwarmRegistry(self.scripts, self.keys, settings.max_swarms)
        self.state = SwarmStateManager(self.scripts, self.keys, ttl_ms=settings.state_ttl_ms)
        self.messenger = SwarmMessenger(self.client, self.keys, sender=self.id)
        if agent_strategy not in AGENT_STRATEGIES:
            raise InvalidArgumentError(f"unknown agent strategy {agent_strategy!r}")
        self.agent_strategy = agent_strategy
        self.pool_bytes = pool_bytes
        self.placement: dict[str, SwarmAgents] = {}
        self.agents: list[AgentProcess] = []
        self.memory: NodeMemory | None = None
        self.gate: MemoryGate | None = None  # admissions to it that wait for room
        self.external_commands = dict(external or {})
        self.concurrency = concurrency if concurrency is not None else settings.agent_concurrency
        if self.concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be >= 1, not {self.concurrency}")
        self.prefetch = prefetch if prefetch is not None else settings.agent_prefetch
        if not 0 <= self.prefetch <= MAX_PREFETCH:
            raise InvalidArgumentError(
                f"prefetch must be in [0, {MAX_PREFETCH}], not {self.prefetch}"
            )
        # a swarm with an external command starts with one external member (scale for more);
        # the window of tasks in flight follows the slots: `prefetch` queued behind each
        # running task
        self.specs = [
            msgspec.structs.replace(
                s,
                external=1 if s.id in self.external_commands else s.external,
                capacity=max(s.capacity, (1 + self.prefetch) * s.max_agents * self.concurrency),
                handlers=",".join(self.handler_names),
                prefixes=",".join(self.allowed),
            )
            for s in self.specs
        ]
        self.external: dict[str, list[ExternalMember]] = {}
        self.backoff = backoff or Backoff()
        self.check_s = check_s
        self.metrics = metrics or WorkerMetrics(enabled=False)  # run worker --metrics-port
        self._recovering: set[str] = set()
        self._gave_up: set[str] = set()
        self._alerted: set[str] = set()
        self._member_seq = 0
        self.held: dict[str, HeldTask] = {}
        self.progress = ProgressWriter(self.tasks, self._token_of)
        #: tasks claimed since start (the kernels' warm-up waits for a span without any)
        self.taken = 0
        self.wake: dict[str, asyncio.Event] = {}
        #: per swarm, claimed tasks waiting for a free agent slot (the prefetch window)
        self.prefetched: dict[str, collections.deque[Claimed]] = {}
        #: per swarm, runs whose agent slot is free again but whose outcome is not recorded yet
        self.finishing: dict[str, int] = {}
        #: per swarm, whether its last claim emptied its queue (an assignment wakes it again)
        self.drained: dict[str, bool] = {}
        self.polls: dict[str, WaitingClaim] = {}
        self.wake_cursors: dict[str, str] = {}
        #: the worker's endless loops (cancelled at shutdown; a wake-up subscription may join)
        self._loops: list[asyncio.Task[None]] = []
        self._subscribed = False
        self.completed = 0
        self.failed = 0
        #: per swarm, the last ids this worker completed (recovery plans report them)
        self.recent: dict[str, collections.deque[str]] = {}
        self._running: set[asyncio.Task[None]] = set()
        #: task id -> the run whose handler is executing now (what stop_task cancels)
        self._handlers: dict[str, asyncio.Task[Any]] = {}
        self._stopped: set[str] = set()
        #: every background task, referenced so none is garbage-collected while it runs
        self._background: set[asyncio.Task[None]] = set()
        self._scaling = asyncio.Lock()
        self._stop = asyncio.Event()
        self._shutting_down = False
        #: the first loop that failed and what it raised; set once, ends run()
        self._failure: tuple[str, BaseException] | None = None
        self._failed = asyncio.Event()

    def _watch(self, task: asyncio.Task[None], name: str, *, endless: bool) -> None:
        """Keep a reference to ``task``; if it raises (or, ``endless``, returns before the
        worker stops), record the failure that ends :meth:`run`."""
        self._background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._background.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            stopping = self._shutting_down or self._stop.is_set()
            if exc is None and (not endless or stopping):
                return
            if self._failure is None:
                self._failure = (name, exc or RuntimeError("returned before the worker stopped"))
                self._failed.set()

        task.add_done_callback(done)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._watch(task, name, endless=False)
        return task

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down cleanly.

        Raises
        ------
        WorkerFailed
            One of the worker's loops raised; the worker handed back its tasks and left first.
        """
        self._stop = stop
        try:
            await self._start()
        except BaseException:
            # e.g. registration refused: no loop runs yet, but members do and must not linger
            with contextlib.suppress(Exception):
                await self._stop_members(announce=False)
            if self.memory is not None:
                self.memory.close()
            await self.client.aclose()
            raise
        for sid in self.placement:
            for member in self._members(sid):
                await self._event("swarm.agent.started", sid, member)
        # Beats and lease renewals outlive `stop`: they must go on while in-flight tasks drain.
        drained = asyncio.Event()
        loops = {
            "heartbeat loop": self._heartbeats(drained),
            "lease renewal loop": self._renew_leases(drained),
            "progress loop": self._progress(drained),
            "supervision loop": self._supervise(drained),
            "listen loop": self._listen(),
            "claim safety net": self._claim_safety_net(stop),
        }
        tasks = self._loops
        for name, coro in loops.items():
            tasks.append(asyncio.create_task(coro, name=name))
            self._watch(tasks[-1], name, endless=True)
        if not self.tasks.can_claim_when_woken:
            self._subscribe_wakeups()
        claimers = []
        for spec in self.specs:
            name = f"claim loop of swarm {spec.id}"
            claimers.append(asyncio.create_task(self._claim_loop(spec.id, stop), name=name))
            self._watch(claimers[-1], name, endless=True)
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await self._shut_down(claimers, tasks, drained)
        if self._failure is not None:
            name, exc = self._failure
            cause = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise WorkerFailed(self.id, name, cause) from exc

    async def _start(self) -> None:
        for spec in self.specs:
            agents = [
                self._new_agent(f"{spec.id}.a{i}", self.concurrency, start=False)
                for i in range(spec.max_agents)
            ]
            self.placement[spec.id] = SwarmAgents(
                agents,
                len(self.agents),
                self.agent_strategy,
                self.concurrency,
                [c for c in spec.caps.split(",") if c],
            )
            self.agents += agents
            self.wake[spec.id] = asyncio.Event()
            self.prefetched[spec.id] = collections.deque()
            self.finishing[spec.id] = 0
            self.recent[spec.id] = collections.deque(maxlen=100)
        # shared: agents read large inputs in it by offset (SHARED_INPUT_BYTES)
        warm = kernels_ready()
        self.memory = NodeMemory(
            self.pool_bytes, n_agents=len(self.agents), shared=True, kernels=warm
        )
        self.gate = MemoryGate(self.memory)
        for sid, command in self.external_commands.items():
            self.external[sid] = [ExternalMember(f"{sid}.x0", command, sid)]

        # the agents start while the registration's round trips wait (a start waits for the
        # fork server, decision 68); no task is claimed before both are done
        def start_agents() -> None:
            for agent in self.agents:
                agent.start()

        starting = asyncio.ensure_future(asyncio.to_thread(start_agents))
        try:
            await self.register()
        finally:
            await starting
        if not warm:
            # claims start now, while the agents start too (a task sent early waits in its
            # agent's pipe); placement and the pool use the Python paths until Numba is loaded
            # (0.3 s of CPU), once the worker is first idle (decision 55)
            self._spawn(
                warm_up_when_idle(self.memory, lambda: bool(self.held), lambda: self.taken),
                "warm-up of the kernels",
            )

    async def _execute(self, swarm_id: str, index: int, c: Claimed) -> None:
        swarm = self.placement[swarm_id]
        agent = swarm.agents[index]
        alloc = None
        freed = posted = False
        # the run is stoppable (stop_task) from its first step: a stop asked before it reached
        # its agent was lost, and a claim of the task made since could not tell it was stale
        me = self._handlers[c.id] = asyncio.current_task()  # type: ignore[assignment]
        try:
            deps: dict[str, bytes] = {}
            if c.deps:
                packed = await self.tasks.packed_results(c.deps)
                deps = {d: r for d, r in zip(c.deps, packed) if r is not None}
            assert self.memory is not None and self.gate is not None
            node = swarm.nodes[index]
            size = len(c.payload) + (sum(len(d) for d in deps.values()) if deps else 0)
            share = self.memory.share_bytes(node)
            if size > share:
                # it can never fit: handing it back would loop forever (the attempt uncounted)
                why = f"input of {size} bytes exceeds the agent's memory share of {share} bytes"
                pool = f" (node pool {self.pool_bytes} bytes over {len(self.agents)} agents)"
                await self._finish(swarm_id, c, "permanent", why + pool)
                return
            # no room for now: wait in the slot for a run to free some (decision 126)
            alloc = await self.gate.admit(node, [c.payload, *deps.values()])
            if alloc is None:
                log.warning("task %s: no room in the node's memory pool; handed back", c.id)
                await self.tasks.release({c.id: c.token})
                return
            payload, inputs = agent_inputs(self.memory, alloc, size, c.payload, deps)
            started = time.monotonic()
            self.progress.started(c.id, agent.agent_id)  # recorded if it runs on (decision 130)
            kind, data = await agent.run(
                c.id, c.attempts, c.handler, payload, inputs, c.timeout_ms / 1000
            )
            run_s = time.monotonic() - started
            self.metrics.ran(swarm_id, kind, run_s)
            log_run(c, swarm_id, agent.agent_id, kind, run_s)
            if kind in ("ok", "error", "permanent"):
                # the agent is done with the task: its slot takes the next (prefetched) task
                # while the outcome waits for the group commit (decision 78)
                self.gate.release(alloc)
                alloc = None
                swarm.done(index)
                freed = True
            if kind == "refused":
                # the swarm's advert said it could run it (stale, or another host wrote it):
                # advertise ours again, then hand the task back uncounted, so the leader routes
                # it to a swarm that can run it (or parks it, saying why) instead of here again
                log.warning("task %s handed back: %s", c.id, data)
                await self.register()
                await self.tasks.release({c.id: c.token})
                return
            if kind in ("lost", "stopped"):
                # its agent was killed to stop another of its tasks (or it was stopped without
                # being cancelled here): not its fault, so hand it back, the attempt uncounted
                log.info("task %s handed back: %s", c.id, data or kind)
                await self.tasks.release({c.id: c.token})
                return
            if kind == "error":
                # the supervisor restarts it once it is unhealthy (3+ failures) or dead
                await self._event("swarm.agent.failed", swarm_id, agent, task=c.id)
            # recorded by the group commit without this run waiting (no future, no task step
            # per outcome): the task stays held, leased and renewed, until its reply
            self._post_outcome(swarm_id, c, kind, data)
            posted = True
        except asyncio.CancelledError:
            if c.id not in self._stopped:
                raise  # shutting down: the drain hands the task back
            log.info("task %s stopped: it no longer belongs to this worker", c.id)
        except NotFound:
            log.warning("task %s vanished while running", c.id)
        except MultiswarmError as e:
            log.error("could not record task %s (its lease will expire): %s", c.id, e)
        except Exception as e:
            await self._fail_attempt(c, e)
        finally:
            self.progress.ended(c.id)
            if self._handlers.get(c.id) is me:
                del self._handlers[c.id]
            self._stopped.discard(c.id)
            if not posted:
                self._unhold(c)
            if alloc is not None and self.gate is not None:
                self.gate.release(alloc)
            if not freed:
                swarm.done(index)
            # the freed slot (or the window room a recorded outcome leaves)
            self._wake_if_work(swarm_id)
