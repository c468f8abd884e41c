"""The worker's members: supervision, replacement and scaling of its swarms' agents.

A mixin of :class:`multiswarm.worker.Worker`, kept apart so each module stays small. Dead or
unhealthy members are restarted with backoff (:mod:`multiswarm.supervisor`), replaced after
failed restarts, and each swarm's members are brought to the targets of its record
(``scale_swarm``). Stopping or killing a member polls for its exit, so none of this blocks the
event loop that renews leases and sends heartbeats. Events go to ``<ns>:events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from multiswarm.agents import AgentProcess
from multiswarm.keys import Keys
from multiswarm.memory_gate import MemoryGate
from multiswarm.messenger import SwarmMessenger
from multiswarm.placement import NodeMemory, SwarmAgents, health_code
from multiswarm.registry import SwarmRegistry
from multiswarm.supervisor import Backoff, ExternalMember, Member, restart_with_backoff
from multiswarm.worker_progress import ProgressWriter


class WorkerMembers:
    """Supervision and scaling of the members of a worker's swarms (mixin of ``Worker``)."""

    id: str
    allowed: tuple[str, ...]
    imports: tuple[str, ...]
    keys: Keys
    messenger: SwarmMessenger
    registry: SwarmRegistry
    placement: dict[str, SwarmAgents]
    agents: list[AgentProcess]
    memory: NodeMemory | None
    gate: MemoryGate | None
    progress: ProgressWriter
    pool_bytes: int
    external: dict[str, list[ExternalMember]]
    external_commands: dict[str, str]
    backoff: Backoff
    check_s: float
    _recovering: set[str]
    _gave_up: set[str]
    _alerted: set[str]
    _member_seq: int
    _scaling: asyncio.Lock

    def _new_agent(self, agent_id: str, concurrency: int, *, start: bool = True) -> AgentProcess:
        """An agent of this worker: its handlers, and its runs' progress to the writer."""
        return AgentProcess(
            agent_id,
            self.allowed,
            concurrency,
            self.imports,
            start=start,
            on_progress=self.progress.note,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` in the background, watched (``Worker`` implements it)."""
        raise NotImplementedError

    def _members(self, sid: str) -> list[AgentProcess | ExternalMember]:
        return [*self.placement[sid].agents, *self.external.get(sid, [])]

    async def _event(
        self, kind: str, swarm_id: str, member: Member | None = None, **detail: Any
    ) -> None:
        payload: dict[str, Any] = {"swarm": swarm_id, "worker": self.id, **detail}
        if member is not None:
            payload.update(
                agent=member.agent_id,
                kind=getattr(member, "kind", "python"),
                failures=getattr(member, "consecutive_failures", 0),
            )
        await self.messenger.publish(self.keys.ch_events, kind, payload)

    async def _supervise(self, done: asyncio.Event) -> None:
        """Find dead or unhealthy members and recover each (restart with backoff, replace)."""
        while not done.is_set():
            for sid, swarm in self.placement.items():
                for i, agent in enumerate(swarm.agents):
                    sick = not agent.alive or health_code(agent.consecutive_failures) >= 2
                    if sick and not swarm.load[i] and not swarm.retired[i]:
                        self._recover_soon(
                            sid, agent, functools.partial(self._replace_agent, sid, i)
                        )
                for member in self.external.get(sid, []):
                    if not member.alive and member.agent_id not in self._gave_up:
                        self._recover_soon(
                            sid, member, functools.partial(self._replace_external, sid, member)
                        )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=self.check_s)

    def _recover_soon(
        self, sid: str, member: Member, replace: Callable[[], Awaitable[Member]]
    ) -> None:
        if member.agent_id in self._recovering:
            return
        self._recovering.add(member.agent_id)
        t = self._spawn(self._recover(sid, member, replace), f"recovery of {member.agent_id}")
        t.add_done_callback(lambda _t: self._recovering.discard(member.agent_id))

    async def _recover(
        self, sid: str, member: Member, replace: Callable[[], Awaitable[Member]]
    ) -> None:
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
        await self._event("swarm.agent.retired", sid, member, cooldown_s=self.backoff.cooldown_s)
        await asyncio.sleep(self.backoff.cooldown_s)
        new = await replace()
        await self._event("swarm.agent.replaced", sid, new, replaces=member.agent_id)
        await self._event("swarm.agent.started", sid, new)

    def _next_id(self, sid: str, kind: str) -> str:
        self._member_seq += 1
        return f"{sid}.{kind}r{self._member_seq}"

    async def _replace_agent(self, sid: str, index: int) -> Member:
        swarm = self.placement[sid]
        old = swarm.agents[index]
        swarm.retired[index] = True
        await old.kill()
        new = self._new_agent(self._next_id(sid, "a"), swarm.concurrency)
        new.replacement = True
        swarm.add(new, node=len(self.agents))  # (a node id no agent of the worker had)
        self.agents.append(new)
        assert self.memory is not None and self.gate is not None
        self.memory.collect([swarm.nodes[index]])
        self.gate.freed()
        # its predecessor's share (without a limit it could pin the whole pool)
        share = self.memory.pool.limit(swarm.nodes[index])
        self.memory.pool.set_limit(swarm.nodes[-1], max_regions=share or self.memory.per_agent)
        return new

    async def _replace_external(self, sid: str, old: ExternalMember) -> Member:
        members = self.external[sid]
        new = ExternalMember(self._next_id(sid, "x"), old.command, sid)
        new.replacement = True
        members[members.index(old)] = new
        await old.stop(timeout_s=5)
        return new

    def _alert_if_no_external(self, sid: str) -> None:
        members = self.external.get(sid, [])
        if (
            members
            and sid not in self._alerted
            and all(m.agent_id in self._gave_up for m in members)
        ):
            self._alerted.add(sid)
            self._spawn(
                self._event(
                    "swarm.alert",
                    sid,
                    reason="every external member failed; the swarm continues on its Python agents",
                ),
                f"alert of swarm {sid}",
            )

    async def _reconcile(self) -> None:
        """Bring each swarm's members to the targets in its record (``scale_swarm``)."""
        for swarm in await self.registry.swarms():
            if swarm.id in self.placement:
                await self._scale_to(swarm.id, swarm.max_agents, swarm.external)

    async def _scale_to(self, sid: str, python: int, external: int) -> None:
        # one scaling at a time: the notification and the periodic reconcile may both ask
        async with self._scaling:
            await self._scale_locked(sid, python, external)

    async def _scale_locked(self, sid: str, python: int, external: int) -> None:
        placement = self.placement[sid]
        live = [i for i in range(len(placement.agents)) if not placement.retired[i]]
        for _ in range(python - len(live)):
            agent = self._new_agent(self._next_id(sid, "a"), placement.concurrency)
            assert self.memory is not None
            if not self._reuse_place(placement, agent):
                index = placement.add(agent, node=len(self.agents))
                self.agents.append(agent)
                self.memory.pool.set_limit(
                    placement.nodes[index], max_bytes=self.pool_bytes // max(1, len(self.agents))
                )
            await self._event("swarm.agent.started", sid, agent, scaled=True)
        # scale down idle Python agents, newest first; busy ones go at a later round
        for i in reversed(live):
            if len([j for j in live if not placement.retired[j]]) <= python:
                break
            if not placement.load[i]:
                placement.retired[i] = True
                await placement.agents[i].stop()
                await self._event("swarm.agent.stopped", sid, placement.agents[i], scaled=True)
        members = self.external.setdefault(sid, [])
        command = self.external_commands.get(sid)
        while command and len(members) < external:
            member = ExternalMember(self._next_id(sid, "x"), command, sid)
            members.append(member)
            await self._event("swarm.agent.started", sid, member, scaled=True)
        while len(members) > max(external, 1 if command else 0):
            member = members.pop()
            await member.stop(timeout_s=5)
            await self._event("swarm.agent.stopped", sid, member, scaled=True)

    def _reuse_place(self, placement: SwarmAgents, agent: AgentProcess) -> bool:
        """Put ``agent`` in the place of a retired member whose process has ended and that runs
        nothing: its index and node pool id (what the retired one pinned collected, its share
        kept). So a swarm scaled down and up again and again keeps as many places as it had
        members at once, where each scale-up added places for good and each new agent got a
        smaller share (found in session 20's review). False when there is no such place."""
        for i, old in enumerate(placement.agents):
            recovering = old.agent_id in self._recovering  # (its replace() names index i)
            if placement.retired[i] and not placement.load[i] and not old.alive and not recovering:
                assert self.memory is not None
                self.memory.collect([placement.nodes[i]])
                placement.agents[i] = agent
                placement.retired[i] = False
                self.agents[self.agents.index(old)] = agent
                return True
        return False

    async def _stop_members(self, announce: bool = True) -> None:
        """Stop every member at once (each polls for its exit; none waits on another)."""
        members = [(sid, m) for sid in self.placement for m in self._members(sid)]
        await asyncio.gather(*(m.stop() for _sid, m in members))
        for sid, m in members if announce else ():
            await self._event("swarm.agent.stopped", sid, m)

    def member_states(self) -> dict[str, dict[str, Any]]:
        """Agent id -> {swarm, kind, state, health, failures, restarts, pid} for reports."""
        out: dict[str, dict[str, Any]] = {}
        for sid, swarm in self.placement.items():
            for i, a in enumerate(swarm.agents):
                state = (
                    "retired"
                    if swarm.retired[i]
                    else "busy"
                    if swarm.load[i]
                    else "idle"
                    if a.alive
                    else "failed"
                )
                out[a.agent_id] = {
                    "swarm": sid,
                    "kind": "python",
                    "state": state,
                    "running": swarm.load[i],
                    "health": health_code(a.consecutive_failures),
                    "failures": a.failures,
                    "restarts": a.restarts,
                    "pid": a.pid,
                }
            for m in self.external.get(sid, []):
                out[m.agent_id] = {
                    "swarm": sid,
                    "kind": "external",
                    "state": m.state,
                    "health": m.health,
                    "failures": m.failures,
                    "restarts": m.restarts,
                    "pid": m.pid,
                }
        return out
