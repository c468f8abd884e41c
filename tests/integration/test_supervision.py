"""Supervision with real processes: Python agents and external members that die are restarted
with backoff, replaced after failed restarts, and the swarm keeps working throughout."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.messages import Envelope, decode_worker
from multiswarm.messenger import SwarmMessenger
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import eventually

pytestmark = pytest.mark.slow

FAST = ["--restart-base-s", "0.1", "--restart-cooldown-s", "0.3", "--probation-s", "0.5"]


class Events:
    """Every envelope on <ns>:events, collected in the background."""

    def __init__(self, client: Client, keys: Keys) -> None:
        self.seen: list[Envelope] = []
        self.ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(SwarmMessenger(client, keys), keys))

    async def _run(self, messenger: SwarmMessenger, keys: Keys) -> None:
        async for _ch, env in messenger.listen([keys.ch_events], self.ready):
            self.seen.append(env)

    def of(self, kind: str, agent: str | None = None) -> list[Envelope]:
        return [
            e
            for e in self.seen
            if e.type == kind and (agent is None or e.payload.get("agent") == agent)
        ]

    async def wait(
        self, kind: str, n: int = 1, agent: str | None = None, timeout_s: float = 60
    ) -> list[Envelope]:
        async def enough() -> list[Envelope]:
            found = self.of(kind, agent)
            return found if len(found) >= n else []

        return await eventually(enough, timeout_s=timeout_s, what=f"{n} x {kind}")

    async def close(self) -> None:
        self._task.cancel()


@pytest.fixture
async def world(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[ProcessGroup, Client, Keys, Events]]:
    group = ProcessGroup(settings.replace(heartbeat_timeout_ms=1500), tmp_path)
    client = connect(settings)
    keys = Keys(settings.namespace)
    events = Events(client, keys)
    await asyncio.wait_for(events.ready.wait(), 10)
    yield group, client, keys, events
    await events.close()
    await client.aclose()
    group.stop_all()


async def _states(client: Client, keys: Keys, worker: str) -> dict[str, dict]:  # type: ignore[type-arg]
    raw = await client.hget(keys.workers, worker)
    return decode_worker(raw).agent_states if raw else {}


async def _run_a_task(client: Client, keys: Keys, tid: str) -> None:
    group_store = TaskStore(Scripts(client), keys)
    await group_store.submit(
        [(task_spec("multiswarm.demo_tasks:noop", id=tid, capabilities=["work"]), tid)]
    )

    async def done() -> bool:
        return (await group_store.get(tid)).status == "completed"

    await eventually(done, timeout_s=60, what=f"{tid} completed")


async def test_external_member_that_exits_is_restarted_replaced_then_alerts(world) -> None:  # type: ignore[no-untyped-def]
    group, client, keys, events = world
    exits = shlex.join([sys.executable, "-c", "import sys; sys.exit(3)"])
    group.spawn("coordinator", ["coordinator", "--id", "c1"])
    group.spawn(
        "w1", ["worker", "--id", "w1", "--swarm", "s:work:1", "--external", f"s={exits}", *FAST]
    )
    await events.wait("swarm.agent.failed", agent="s.x0")
    restarts = await events.wait("swarm.agent.restarting", n=3, agent="s.x0")
    assert [e.payload["attempt"] for e in restarts[:3]] == [1, 2, 3]
    (replaced,) = await events.wait("swarm.agent.replaced")
    assert replaced.payload["replaces"] == "s.x0" and replaced.payload["kind"] == "external"
    new_id = replaced.payload["agent"]
    await events.wait("swarm.agent.restarting", n=3, agent=new_id)
    await events.wait("swarm.agent.abandoned", agent=new_id)
    (alert,) = await events.wait("swarm.alert")
    assert alert.payload["swarm"] == "s" and "external" in alert.payload["reason"]
    # the swarm keeps running on its Python agent
    await _run_a_task(client, keys, "after-alert")
    assert len(events.of("swarm.agent.replaced")) == 1  # a replacement is not replaced again


async def test_killed_external_member_is_restarted_and_recovers(world) -> None:  # type: ignore[no-untyped-def]
    group, client, keys, events = world
    sleeper = shlex.join([sys.executable, "-c", "import time; time.sleep(120)"])
    group.spawn(
        "w1", ["worker", "--id", "w1", "--swarm", "s:work:1", "--external", f"s={sleeper}", *FAST]
    )

    async def running_pid() -> int:
        st = (await _states(client, keys, "w1")).get("s.x0", {})
        return int(st.get("pid") or 0) if st.get("state") == "running" else 0

    pid = await eventually(running_pid, what="external member running")
    os.kill(pid, signal.SIGKILL)
    await events.wait("swarm.agent.failed", agent="s.x0")
    await events.wait("swarm.agent.recovered", agent="s.x0")

    async def restarted() -> bool:
        st = (await _states(client, keys, "w1")).get("s.x0", {})
        return st.get("state") == "running" and st.get("restarts") == 1 and st.get("pid") != pid

    await eventually(restarted, what="member running again under a new pid")
    assert not events.of("swarm.agent.replaced")


def _agent_pids(worker_pid: int) -> list[int]:
    """The worker's agent processes: multiprocessing spawn children, or the children of its
    fork server (decision 68)."""
    pids = []
    for tid in os.listdir(f"/proc/{worker_pid}/task"):
        try:
            children = Path(f"/proc/{worker_pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmd:
                pids.append(int(child))
            elif b"forkserver" in cmd:
                pids += map(int, Path(f"/proc/{child}/task/{child}/children").read_text().split())
    return pids


async def test_killed_python_agent_restarts_then_is_replaced(world) -> None:  # type: ignore[no-untyped-def]
    group, client, keys, events = world
    group.spawn("coordinator", ["coordinator", "--id", "c1"])
    worker = group.spawn("w1", ["worker", "--id", "w1", "--swarm", "s:work:1", *FAST])
    await eventually(lambda: asyncio.sleep(0, _agent_pids(worker.pid)), what="agent up")

    # one kill: restarted after the backoff, and recovered
    os.kill(_agent_pids(worker.pid)[0], signal.SIGKILL)
    await events.wait("swarm.agent.recovered", agent="s.a0")
    await _run_a_task(client, keys, "after-restart")

    # keep killing it: three restarts fail, then it is replaced by a new agent
    stop = asyncio.Event()

    async def killer() -> None:
        while not stop.is_set():
            for pid in _agent_pids(worker.pid):
                if not events.of("swarm.agent.replaced"):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.02)

    k = asyncio.create_task(killer())
    try:
        (replaced,) = await events.wait("swarm.agent.replaced")
    finally:
        stop.set()
        await k
    assert replaced.payload["replaces"] == "s.a0" and replaced.payload["kind"] == "python"
    assert len(events.of("swarm.agent.restarting", agent="s.a0")) >= 1 + 3
    await _run_a_task(client, keys, "after-replacement")  # the replacement works
    await events.wait("swarm.agent.started", agent=replaced.payload["agent"])


async def test_scale_swarm_splits_70_30_and_keeps_one_of_each(world) -> None:  # type: ignore[no-untyped-def]
    from multiswarm.registry import SwarmRegistry

    group, client, keys, events = world
    sleeper = shlex.join([sys.executable, "-c", "import time; time.sleep(120)"])
    group.spawn(
        "w1", ["worker", "--id", "w1", "--swarm", "s:work:2", "--external", f"s={sleeper}", *FAST]
    )
    registry = SwarmRegistry(Scripts(client), keys)

    async def members(kind: str) -> int:
        return sum(
            1
            for a in (await _states(client, keys, "w1")).values()
            if a["kind"] == kind and a["state"] not in ("retired", "stopped", "failed")
        )

    async def counts_are(python: int, external: int) -> bool:
        return (await members("python"), await members("external")) == (python, external)

    await eventually(lambda: counts_are(2, 1), what="2 Python + 1 external")
    assert await registry.scale("s", 13) == (9, 4)  # +10: 7 Python, 3 external
    await eventually(lambda: counts_are(9, 4), what="scaled up")
    assert await registry.scale("s", 3) == (1, 2)  # Python agents go first
    await eventually(lambda: counts_are(1, 2), what="scaled down")
    assert await registry.scale("s", 2) == (1, 1)
    await eventually(lambda: counts_are(1, 1), what="one of each")
    with pytest.raises(ValueError):
        await registry.scale("s", 1)
    assert len(events.of("swarm.scaled")) == 3
