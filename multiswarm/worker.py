"""The per-node worker: hosts swarms, their agents claim and run tasks.

A worker registers as host of its swarms (host_swarms.lua), beats every third of the heartbeat
timeout, claims tasks of its swarms only as fast as it has idle agents, runs each in an agent
process (:mod:`multiswarm.agents`), renews the lease of every running task every third of its
lease, and records results idempotently. On SIGTERM it stops claiming, lets in-flight tasks finish
for ``grace_s``, hands back what is still running (release_tasks.lua) and leaves the registry.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from multiswarm.agents import DEFAULT_ALLOWED, AgentProcess
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.errors import MultiswarmError, NotFound, WorkerUnknown
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger
from multiswarm.placement import (
    AGENT_STRATEGIES,
    POOL_BYTES,
    NodeMemory,
    SwarmAgents,
    health_code,
    warm_up,
)
from multiswarm.registry import SwarmRegistry, SwarmSpec
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from multiswarm.supervisor import Backoff, ExternalMember, Member, restart_with_backoff
from multiswarm.tasks import Claimed, TaskStore

log = logging.getLogger(__name__)


class _Held:
    __slots__ = ("claimed", "renewed", "swarm")

    def __init__(self, claimed: Claimed, swarm: str) -> None:
        self.claimed = claimed
        self.swarm = swarm
        self.renewed = time.monotonic()


class Worker:
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
        Import-path prefixes of handlers this worker may run.
    grace_s:
        On shutdown, how long in-flight tasks may still finish before they are handed back.
    agent_strategy:
        How claimed tasks are placed on a swarm's agents (:data:`AGENT_STRATEGIES`).
    pool_bytes:
        The node's working-memory pool (28 MiB), shared by all agents of this worker.
    external:
        Swarm id -> command line of an external member (any executable) to run beside the
        swarm's Python agents, supervised the same way (:mod:`multiswarm.supervisor`).
    backoff:
        Restart policy of dead or unhealthy members (5 s doubling, 3 attempts, 60 s cooldown).
    check_s:
        How often members' processes are checked.
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
    ) -> None:
        self.settings = settings
        self.specs = list(swarms)
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.allowed = tuple(allowed_handlers)
        self.grace_s = grace_s
        self.client = connect(settings)
        self.keys = Keys(settings.namespace)
        self.scripts = Scripts(self.client, settings.reconnect_timeout_s)
        self.tasks = TaskStore(self.scripts, self.keys)
        self.registry = SwarmRegistry(self.scripts, self.keys, settings.max_swarms)
        self.state = SwarmStateManager(self.scripts, self.keys, ttl_ms=settings.state_ttl_ms)
        self.messenger = SwarmMessenger(self.client, self.keys, sender=self.id)
        if agent_strategy not in AGENT_STRATEGIES:
            raise ValueError(f"unknown agent strategy {agent_strategy!r}")
        self.agent_strategy = agent_strategy
        self.pool_bytes = pool_bytes
        self.placement: dict[str, SwarmAgents] = {}
        self.agents: list[AgentProcess] = []
        self.memory: NodeMemory | None = None
        self.external_commands = dict(external or {})
        # a swarm with an external command starts with one external member (scale for more)
        self.specs = [msgspec.structs.replace(s, external=1) if s.id in self.external_commands
                      else s for s in self.specs]
        self.external: dict[str, list[ExternalMember]] = {}
        self.backoff = backoff or Backoff()
        self.check_s = check_s
        self._recovering: set[str] = set()
        self._gave_up: set[str] = set()
        self._alerted: set[str] = set()
        self._member_seq = 0
        self.held: dict[str, _Held] = {}
        self.wake: dict[str, asyncio.Event] = {}
        self.completed = 0
        self.failed = 0
        #: per swarm, the last ids this worker completed (recovery plans report them)
        self.recent: dict[str, collections.deque[str]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def register(self) -> None:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "agents": len(self.agents)}
        before = await self.registry.host_swarms(self.id, info, self.specs)
        log.info("worker %s hosts %s", self.id, before)
        await self.messenger.publish(self.keys.ch_tasks, "swarm_changed", {"worker": self.id})

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down cleanly."""
        for spec in self.specs:
            agents = [AgentProcess(f"{spec.id}.a{i}", self.allowed) for i in range(spec.max_agents)]
            self.placement[spec.id] = SwarmAgents(agents, len(self.agents), self.agent_strategy)
            self.agents += agents
            self.wake[spec.id] = asyncio.Event()
            self.recent[spec.id] = collections.deque(maxlen=100)
        # compile or load the kernels before registering, so no claim waits on Numba
        await asyncio.to_thread(warm_up)
        self.memory = NodeMemory(self.pool_bytes, n_agents=len(self.agents))
        for sid, command in self.external_commands.items():
            self.external[sid] = [ExternalMember(f"{sid}.x0", command, sid)]
        await self.register()
        for sid in self.placement:
            for member in self._members(sid):
                await self._event("swarm.agent.started", sid, member)
        # Beats and lease renewals outlive `stop`: they must go on while in-flight tasks drain.
        drained = asyncio.Event()
        loops = [asyncio.create_task(self._heartbeats(drained)),
                 asyncio.create_task(self._renew_leases(drained)),
                 asyncio.create_task(self._supervise(drained)),
                 asyncio.create_task(self._listen())]
        claimers = [asyncio.create_task(self._claim_loop(s.id, stop)) for s in self.specs]
        try:
            await stop.wait()
        finally:
            for c in claimers:
                c.cancel()
            await asyncio.gather(*claimers, return_exceptions=True)
            await self._drain()
            try:  # a clean leave records that nothing is running any more
                await self._save_progress()
            except MultiswarmError as e:
                log.warning("could not save final progress: %s", e)
            drained.set()
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._leave()

    async def _drain(self) -> None:
        if self._running:
            log.info("waiting up to %.0f s for %d in-flight tasks", self.grace_s,
                     len(self._running))
            await asyncio.wait(self._running, timeout=self.grace_s)
        held = {tid: h.claimed.token for tid, h in self.held.items()}
        for t in self._running:
            t.cancel()
        if held:
            try:
                n = await self.tasks.release(held)
                log.info("handed back %d unfinished tasks", n)
            except MultiswarmError as e:
                log.warning("could not hand back tasks (their leases will expire): %s", e)

    async def _leave(self) -> None:
        try:
            await self.registry.reap_workers(0, worker_id=self.id, graceful=True)
        except MultiswarmError as e:
            log.warning("could not leave the registry: %s", e)
        for sid in self.placement:
            for member in self._members(sid):
                member.stop()
                await self._event("swarm.agent.stopped", sid, member)
        await self.client.aclose()

    async def _claim_loop(self, swarm_id: str, stop: asyncio.Event) -> None:
        wake = self.wake[swarm_id]
        swarm = self.placement[swarm_id]
        while not stop.is_set():
            free = swarm.placeable()
            claimed: list[Claimed] = []
            if free:
                wake.clear()
                try:
                    claimed = await self.tasks.claim(swarm_id, self.id, free)
                except WorkerUnknown:
                    log.warning("declared dead by the registry; registering again")
                    await self.register()
                    continue
                except MultiswarmError as e:
                    log.warning("claim failed: %s", e)
                    await asyncio.sleep(0.5)
                    continue
            unplaced: dict[str, str] = {}
            for c, pick in zip(claimed, swarm.place(len(claimed)) if claimed else []):
                if pick < 0:
                    unplaced[c.id] = c.token
                    continue
                self.held[c.id] = _Held(c, swarm_id)
                t = asyncio.create_task(self._execute(swarm_id, pick, c))
                self._running.add(t)
                t.add_done_callback(self._running.discard)
            if unplaced:  # no healthy agent after all: hand back, attempt not counted
                await self.tasks.release(unplaced)
            if not claimed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=0.5)

    async def _execute(self, swarm_id: str, index: int, c: Claimed) -> None:
        swarm = self.placement[swarm_id]
        agent = swarm.agents[index]
        alloc = None
        try:
            deps: dict[str, bytes] = {}
            if c.deps:
                raws = await self.scripts.read(lambda: self.client.hmget(self.keys.results, c.deps))
                deps = {d: r if isinstance(r, bytes) else r.encode()
                        for d, r in zip(c.deps, raws) if r is not None}
            assert self.memory is not None
            alloc = self.memory.admit(swarm.first_index + index, [c.payload, *deps.values()])
            if alloc is None:
                log.warning("task %s: input does not fit the node's memory pool; handed back",
                            c.id)
                await self.tasks.release({c.id: c.token})
                return
            kind, data = await agent.run(c.id, c.attempts, c.handler, c.payload, deps,
                                         c.timeout_ms / 1000)
            if kind == "error":
                # the supervisor restarts it once it is unhealthy (3+ failures) or dead
                await self._event("swarm.agent.failed", swarm_id, agent, task=c.id)
            if kind == "ok":
                outcome = await self._record(c, data)
                self.completed += outcome == "completed"
                self.recent[swarm_id].append(c.id)
            else:
                self.failed += 1
                outcome = await self.tasks.fail(c.id, c.token, data, permanent=kind == "permanent")
                log.info("task %s failed (%s): %s", c.id, outcome, data.splitlines()[-1:])
            await self.messenger.publish(
                self.keys.ch_tasks, "task_completed" if kind == "ok" else "task_failed",
                {"task": c.id, "swarm": swarm_id, "outcome": outcome})
        except NotFound:
            log.warning("task %s vanished while running", c.id)
        except MultiswarmError as e:
            log.error("could not record task %s (its lease will expire): %s", c.id, e)
        finally:
            self.held.pop(c.id, None)
            if alloc is not None and self.memory is not None:
                self.memory.release(alloc)
            swarm.done(index)
            self.wake[swarm_id].set()

    async def _record(self, c: Claimed, data: bytes) -> str:
        # The result is already packed by the agent; complete_task stores the bytes as they are.
        reply = await self.scripts.call(
            "complete_task", self.keys.task_keyset, [c.id, c.token, self.id, data])
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        period = self.settings.heartbeat_timeout_ms / 3000
        while not stop.is_set():
            used, total, share = self.memory.load() if self.memory else (0, 0, 0.0)
            report: dict[str, Any] = {"running": len(self.held), "agents": len(self.agents),
                                      "completed": self.completed, "failed": self.failed,
                                      "mem_used": used, "mem_total": total,
                                      "agent_states": self.member_states()}
            try:
                if not await self.registry.heartbeat(self.id, report, share):
                    log.warning("declared dead by the registry; registering again")
                    await self.register()
                await self._save_progress()
                await self._reconcile()
            except MultiswarmError as e:
                log.warning("heartbeat failed: %s", e)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=period)

    async def _save_progress(self) -> None:
        """Versioned per-swarm state: what this worker holds and has done, per swarm."""
        now_ms = int(time.time() * 1000)
        for spec in self.specs:
            mine = {
                "running": sorted(t for t, h in self.held.items() if h.swarm == spec.id),
                "agents": spec.max_agents,
                "agent_ids": [a.agent_id for a in self.placement[spec.id].agents],
                "completed": list(self.recent[spec.id]),
                "at_ms": now_ms,
            }
            await self.state.update_state(
                spec.id, functools.partial(_merge_progress, self.id, spec.id, mine))

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            due = {tid: h for tid, h in self.held.items()
                   if time.monotonic() - h.renewed >= h.claimed.lease_ms / 3000}
            if due:
                lease_ms = min(h.claimed.lease_ms for h in due.values())
                try:
                    lost = await self.tasks.extend(
                        self.id, {t: h.claimed.token for t, h in due.items()}, lease_ms)
                    now = time.monotonic()
                    for h in due.values():
                        h.renewed = now
                    if lost:
                        log.info("leases lost for %s", lost)
                except MultiswarmError as e:
                    log.warning("lease renewal failed: %s", e)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)

    # -- supervision ---------------------------------------------------------------------------
    def _members(self, sid: str) -> list[AgentProcess | ExternalMember]:
        return [*self.placement[sid].agents, *self.external.get(sid, [])]

    async def _event(self, kind: str, swarm_id: str, member: Member | None = None,
                     **detail: Any) -> None:
        payload: dict[str, Any] = {"swarm": swarm_id, "worker": self.id, **detail}
        if member is not None:
            payload.update(agent=member.agent_id, kind=getattr(member, "kind", "python"),
                           failures=getattr(member, "consecutive_failures", 0))
        await self.messenger.publish(self.keys.ch_events, kind, payload)

    async def _supervise(self, done: asyncio.Event) -> None:
        """Find dead or unhealthy members and recover each (restart with backoff, replace)."""
        while not done.is_set():
            for sid, swarm in self.placement.items():
                for i, agent in enumerate(swarm.agents):
                    sick = not agent.alive or health_code(agent.consecutive_failures) >= 2
                    if sick and not swarm.busy[i] and not swarm.retired[i]:
                        self._recover_soon(sid, agent, functools.partial(self._replace_agent,
                                                                         sid, i))
                for member in self.external.get(sid, []):
                    if not member.alive and member.agent_id not in self._gave_up:
                        self._recover_soon(sid, member, functools.partial(
                            self._replace_external, sid, member))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=self.check_s)

    def _recover_soon(self, sid: str, member: Member, replace: Callable[[], Member]) -> None:
        if member.agent_id in self._recovering:
            return
        self._recovering.add(member.agent_id)
        t = asyncio.create_task(self._recover(sid, member, replace))
        t.add_done_callback(lambda _t: self._recovering.discard(member.agent_id))

    async def _recover(self, sid: str, member: Member, replace: Callable[[], Member]) -> None:
        await self._event("swarm.agent.failed", sid, member, alive=member.alive)

        async def emit(kind: str, detail: dict[str, Any]) -> None:
            await self._event(kind, sid, member, **detail)

        if await restart_with_backoff(member, self.backoff, emit):
            if isinstance(member, (AgentProcess, ExternalMember)):
                member.consecutive_failures = 0
            await self._event("swarm.agent.recovered", sid, member)
            return
        self._gave_up.add(member.agent_id)
        if getattr(member, "replacement", False):
            # a replacement that cannot stay up either: stop trying, say so
            await self._event("swarm.agent.abandoned", sid, member)
            self._alert_if_no_external(sid)
            return
        await self._event("swarm.agent.retired", sid, member,
                          cooldown_s=self.backoff.cooldown_s)
        await asyncio.sleep(self.backoff.cooldown_s)
        new = replace()
        await self._event("swarm.agent.replaced", sid, new, replaces=member.agent_id)
        await self._event("swarm.agent.started", sid, new)

    def _next_id(self, sid: str, kind: str) -> str:
        self._member_seq += 1
        return f"{sid}.{kind}r{self._member_seq}"

    def _replace_agent(self, sid: str, index: int) -> Member:
        swarm = self.placement[sid]
        old = swarm.agents[index]
        old.kill()
        swarm.retired[index] = True
        new = AgentProcess(self._next_id(sid, "a"), self.allowed)
        new.replacement = True
        swarm.add(new)
        self.agents.append(new)
        assert self.memory is not None
        self.memory.collect([swarm.first_index + index])
        return new

    def _replace_external(self, sid: str, old: ExternalMember) -> Member:
        old.stop(timeout_s=5)
        members = self.external[sid]
        new = ExternalMember(self._next_id(sid, "x"), old.command, sid)
        new.replacement = True
        members[members.index(old)] = new
        return new

    def _alert_if_no_external(self, sid: str) -> None:
        members = self.external.get(sid, [])
        if members and sid not in self._alerted and all(
                m.agent_id in self._gave_up for m in members):
            self._alerted.add(sid)
            asyncio.get_running_loop().create_task(self._event(
                "swarm.alert", sid, reason="every external member failed; the swarm continues "
                "on its Python agents"))

    async def _reconcile(self) -> None:
        """Bring each swarm's members to the targets in its record (``scale_swarm``)."""
        for swarm in await self.registry.swarms():
            if swarm.id in self.placement:
                await self._scale_to(swarm.id, swarm.max_agents, swarm.external)

    async def _scale_to(self, sid: str, python: int, external: int) -> None:
        placement = self.placement[sid]
        live = [i for i in range(len(placement.agents)) if not placement.retired[i]]
        for _ in range(python - len(live)):
            agent = AgentProcess(self._next_id(sid, "a"), self.allowed)
            index = placement.add(agent)
            self.agents.append(agent)
            assert self.memory is not None
            self.memory.pool.set_limit(placement.first_index + index,
                                       max_bytes=self.pool_bytes // max(1, len(self.agents)))
            await self._event("swarm.agent.started", sid, agent, scaled=True)
        # scale down idle Python agents, newest first; busy ones go at a later round
        for i in reversed(live):
            if len([j for j in live if not placement.retired[j]]) <= python:
                break
            if not placement.busy[i]:
                placement.retired[i] = True
                placement.agents[i].stop()
                await self._event("swarm.agent.stopped", sid, placement.agents[i], scaled=True)
        members = self.external.setdefault(sid, [])
        command = self.external_commands.get(sid)
        while command and len(members) < external:
            member = ExternalMember(self._next_id(sid, "x"), command, sid)
            members.append(member)
            await self._event("swarm.agent.started", sid, member, scaled=True)
        while len(members) > max(external, 1 if command else 0):
            member = members.pop()
            member.stop(timeout_s=5)
            await self._event("swarm.agent.stopped", sid, member, scaled=True)

    def member_states(self) -> dict[str, dict[str, Any]]:
        """Agent id -> {swarm, kind, state, health, failures, restarts, pid} for reports."""
        out: dict[str, dict[str, Any]] = {}
        for sid, swarm in self.placement.items():
            for i, a in enumerate(swarm.agents):
                state = ("retired" if swarm.retired[i] else "busy" if swarm.busy[i]
                         else "idle" if a.alive else "failed")
                out[a.agent_id] = {"swarm": sid, "kind": "python", "state": state,
                                   "health": health_code(a.consecutive_failures),
                                   "failures": a.failures, "restarts": a.restarts,
                                   "pid": a.pid}
            for m in self.external.get(sid, []):
                out[m.agent_id] = {"swarm": sid, "kind": "external", "state": m.state,
                                   "health": m.health, "failures": m.failures,
                                   "restarts": m.restarts, "pid": m.pid}
        return out

    async def _listen(self) -> None:
        async for _ch, env in self.messenger.listen([self.keys.ch_tasks]):
            if env.type == "task_assignment" and env.target in self.wake:
                self.wake[env.target].set()
            elif env.type == "swarm_scaled" and env.target in self.placement:
                try:
                    swarm = await self.registry.get(env.target)
                    await self._scale_to(swarm.id, swarm.max_agents, swarm.external)
                except MultiswarmError as e:
                    log.warning("could not scale %s: %s", env.target, e)


def _merge_progress(worker_id: str, swarm_id: str, mine: dict[str, Any],
                    data: dict[str, Any]) -> dict[str, Any]:
    """Put this worker's entry into a swarm's state, leaving other workers' entries alone."""
    workers = dict(data.get("workers", {}))
    workers[worker_id] = mine
    return {**data, "swarm": swarm_id, "workers": workers}
