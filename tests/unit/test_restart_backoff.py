"""Supervision of members (supervisor.py): restarts wait base, then twice, then four times as
long; stopping an external member stops its whole session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from multiswarm.supervisor import Backoff, ExternalMember, restart_with_backoff


class _NeverUp:
    """A member whose every restart dies at once; records when each restart came."""

    agent_id = "s.a0"
    alive = False

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.restarts: list[float] = []

    async def restart(self) -> None:
        self.restarts.append(time.monotonic() - self.started)


async def test_each_restart_waits_twice_as_long_as_the_one_before() -> None:
    """Documented 5 s, 10 s, 20 s; the waits were base, base, twice base (the first doubling
    lost between the first wait, slept by hand, and tenacity's; found in review)."""
    member = _NeverUp()
    events: list[Any] = []

    async def emit(kind: str, data: dict[str, Any]) -> None:
        events.append(kind)

    policy = Backoff(base_s=0.2, attempts=3, probation_s=0.05)
    assert not await restart_with_backoff(member, policy, emit)
    gaps = [b - a for a, b in zip([0.0, *member.restarts], member.restarts)]
    # each gap is at least the wait before its restart (a loaded machine only adds to it):
    # before, the second was 0.2 s + the probation
    waits = [0.2, 0.4, 0.8]
    assert all(gap >= wait - 0.01 for gap, wait in zip(gaps, waits)), gaps
    assert sum(gaps) < 10, gaps
    assert events == ["swarm.agent.restarting"] * 3


async def test_stopping_an_external_member_stops_what_it_started() -> None:
    """A member is the leader of its own session; signalled by pid alone, a wrapper script's
    children outlived it (found in review)."""
    member = ExternalMember("s.x0", 'sh -c "sleep 300 & wait"', "s")  # (started)
    pgid = member.pid
    try:
        deadline = time.monotonic() + 10
        while len(_in_group(pgid)) < 2:  # the shell and its sleep
            assert time.monotonic() < deadline, "the wrapper's child never started"
            await asyncio.sleep(0.02)
        await member.stop(timeout_s=2)
        assert _in_group(pgid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry))
    return out
