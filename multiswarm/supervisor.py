"""Supervision of a swarm's members: Python agent processes and external executables.

A member that dies (or, for a Python agent, turns unhealthy) is restarted with exponential
backoff: 5 s, then 10 s, then 20 s (base 5 s doubling, at most 3 attempts; DESIGN.md,
Resilience), retried by tenacity. A restart counts as failed when the member dies again within
its probation period. After 3 failed restarts the member is retired and, after a 60 s cooldown,
replaced by a fresh member with a new id. If every external member of a swarm has failed for good,
the swarm keeps running on its Python agents and an alert event is raised.

External members are any executable given on the command line (a Rust service, a script): the
worker starts it, maps its process state (starting, running, stopping, stopped, failed) to health,
restarts and replaces it. Events on ``<ns>:events``: ``swarm.agent.started|stopped|failed|
recovered``, ``swarm.agent.replaced``, ``swarm.alert``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
import tenacity

from multiswarm.errors import MultiswarmError

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

#: Longest wait for a SIGKILLed member to be reaped, in seconds.
KILL_WAIT_S = 5.0
#: External member states and the health they map to (healthy 0 ... dead 3).
EXTERNAL_HEALTH = {"starting": 1, "running": 0, "stopping": 1, "stopped": 3, "failed": 3}


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Restart policy (defaults from DESIGN.md: 5 s base, doubling, 3 attempts, 60 s cooldown).

    ``probation_s`` is how long a restarted member must stay up for the restart to count."""

    base_s: float = 5.0
    attempts: int = 3
    cooldown_s: float = 60.0
    probation_s: float = 2.0
    max_s: float = 60.0


class Member(Protocol):
    """What the supervisor needs of a member (an AgentProcess or an ExternalMember)."""

    @property
    def agent_id(self) -> str: ...

    @property
    def alive(self) -> bool: ...

    async def restart(self) -> None: ...


class ExternalMember:
    """An external process as a swarm member.

    Parameters
    ----------
    agent_id:
        Member id (``<swarm>.x<n>``).
    command:
        The command line (split with shlex); ``MULTISWARM_MEMBER_ID`` and
        ``MULTISWARM_SWARM_ID`` are set in its environment.
    """

    kind = "external"

    def __init__(self, agent_id: str, command: str, swarm_id: str) -> None:
        self.agent_id = agent_id
        self.command = command
        self.swarm_id = swarm_id
        self.state = "stopped"
        self.restarts = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.exit_code: int | None = None
        self.replacement = False
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = dict(
            os.environ, MULTISWARM_MEMBER_ID=self.agent_id, MULTISWARM_SWARM_ID=self.swarm_id
        )
        self.state = "starting"
        try:
            self._proc = subprocess.Popen(
                shlex.split(self.command), env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as e:
            log.warning("external member %s cannot start: %s", self.agent_id, e)
            self._proc = None
            self.state = "failed"
            return
        self.state = "running"

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else 0

    @property
    def alive(self) -> bool:
        """Polls the process; a member found dead becomes ``failed`` (or ``stopped`` if asked)."""
        if self._proc is None:
            return False
        code = self._proc.poll()
        if code is None:
            return True
        if self.state not in ("stopping", "stopped", "failed"):
            self.exit_code = code
            self.state = "failed"
            self.failures += 1
            self.consecutive_failures += 1
        elif self.state == "stopping":
            self.state = "stopped"
        return False

    @property
    def health(self) -> int:
        return EXTERNAL_HEALTH[self.state]

    async def restart(self) -> None:
        await self.stop(timeout_s=5)
        self.restarts += 1
        self.start()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``. Waits by polling, so a member that ignores
        SIGTERM does not block the worker's event loop (its leases and heartbeats) meanwhile."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.state = "stopping"
            _signal_session(proc, signal.SIGTERM)
            if not await _exited(proc, timeout_s):
                _signal_session(proc, signal.SIGKILL)
                if not await _exited(proc, KILL_WAIT_S):
                    log.warning(
                        "external member %s (pid %d) still alive after SIGKILL",
                        self.agent_id,
                        proc.pid,
                    )
        if proc is not None:  # what it left behind in its session (a wrapper's children)
            _signal_session(proc, signal.SIGKILL)
        self.state = "stopped" if self.state != "failed" else "failed"


def _signal_session(proc: subprocess.Popen[bytes], sig: int) -> None:
    """``sig`` to every process of the member's session: it was started as the leader of its
    own (``start_new_session``), so its process group is its pid, and a wrapper script's
    children go with it (signalled by pid alone, they outlived it; found in review)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _exited(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll (``waitpid`` without blocking) until ``proc`` has exited; False on timeout."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(0.05, delay * 2)
    return True


class RestartFailed(MultiswarmError):
    """A restarted member died again within its probation period."""


async def restart_with_backoff(member: Member, policy: Backoff, emit: Emit) -> bool:
    """Restart ``member`` until it stays up for ``probation_s``; True if it recovered.

    Attempt ``k`` (1-based) waits ``base_s * 2**(k-1)`` seconds first (capped at ``max_s``);
    at most ``policy.attempts`` attempts.
    """
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(RestartFailed),
        # after attempt k tenacity waits multiplier * 2**(k-1): attempt k + 1 waits base * 2**k
        # (the first attempt's base_s is slept below)
        wait=tenacity.wait_exponential(multiplier=2 * policy.base_s, exp_base=2, max=policy.max_s),
        stop=tenacity.stop_after_attempt(policy.attempts),
        before=lambda state: None,
        reraise=True,
    )
    attempt_no = 0
    try:
        async for attempt in retrying:
            with attempt:
                attempt_no += 1
                # tenacity waits only between attempts: the first restart waits base_s too
                if attempt_no == 1:
                    await asyncio.sleep(policy.base_s)
                await member.restart()
                await emit(
                    "swarm.agent.restarting", {"agent": member.agent_id, "attempt": attempt_no}
                )
                deadline = time.monotonic() + policy.probation_s
                while time.monotonic() < deadline:
                    if not member.alive:
                        raise RestartFailed(member.agent_id)
                    await asyncio.sleep(min(0.05, policy.probation_s / 10))
    except RestartFailed:
        return False
    return True
