"""Agents are stopped by their worker alone, never outlive it, and take their handlers' subprocesses
with them when killed.

Before decision 122: Ctrl-C in a terminal (or a service manager's SIGTERM to the whole group)
reached the agents too, which died at once: each running task was recorded as a failed attempt
("process died") while the worker's drain was still giving it time; and a worker SIGKILLed left
its agents running their handlers as orphans while the tasks ran again elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.messages import TaskSpec
from multiswarm.registry import swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec
from tests.faults.inprocess import worker_system
from tests.integration.helpers import eventually, reap

pytestmark = pytest.mark.slow

SLEEPER = "multiswarm.demo_tasks:sleep_then_return"


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """A worker process in a session (and process group) of its own, as in a terminal."""
    cli = [sys.executable, "-m", "multiswarm", "--redis-url", settings.redis_url]
    worker = ["run", "worker", "--id", "w1", "--swarm", "s:work:1", "--grace-s", "60"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*cli, "--namespace", settings.namespace, *worker],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
async def system(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[TaskStore, Path]]:
    group = ProcessGroup(settings, tmp_path)
    group.spawn("coordinator", ["coordinator", "--id", "c1"])
    store = TaskStore(
        Scripts(connect(settings), reconnect_timeout_s=30.0), Keys(settings.namespace)
    )
    try:
        yield store, tmp_path
    finally:
        await store.client.aclose()
        group.stop_all()


@contextlib.asynccontextmanager
async def running(
    settings: Settings, system: tuple[TaskStore, Path], spec: TaskSpec, seconds: float
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A worker process (its own group) running task ``spec``, a sleep of ``seconds``."""
    store, tmp = system
    worker = _worker(settings, tmp / "worker.log")
    try:
        await store.submit([(spec, {"seconds": seconds})])

        async def started() -> bool:
            return (await store.get(spec.id)).status == "running"

        await eventually(started, timeout_s=60, what=f"{spec.id} running")
        yield worker
    finally:
        reap(worker)


async def test_ctrl_c_to_the_group_lets_the_running_task_finish(
    settings: Settings, system: tuple[TaskStore, Path]
) -> None:
    store, _ = system
    spec = task_spec(SLEEPER, id="t", capabilities=["work"], max_attempts=1)
    async with running(settings, system, spec, 4) as worker:
        os.killpg(worker.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        assert await asyncio.to_thread(worker.wait, 60) == 0
        task = await store.get("t")
        assert (task.status, task.attempts) == ("completed", 1), task


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


async def test_a_killed_worker_s_agents_end_with_it(
    settings: Settings, system: tuple[TaskStore, Path]
) -> None:
    store, _ = system
    spec = task_spec(SLEEPER, id="u", capabilities=["work"])
    async with running(settings, system, spec, 120) as worker:
        keys = Keys(settings.namespace)

        async def agent_pids() -> list[int]:
            raw = await store.client.hget(keys.workers, "w1")
            states = msgspec.json.decode(raw or b"{}").get("agent_states", {})
            return [int(a["pid"]) for a in states.values() if a.get("pid")]

        async def reported() -> bool:
            return bool(await agent_pids())

        await eventually(reported, timeout_s=30, what="the worker reporting its agents")
        pids = await agent_pids()
        assert all(_pid_alive(p) for p in pids)
        worker.kill()  # SIGKILL: the worker alone, no chance to stop anything
        worker.wait(10)

        async def agents_gone() -> bool:
            return not any(_pid_alive(p) for p in pids)

        await eventually(agents_gone, timeout_s=15, what="the orphaned agents ending")


async def test_a_killed_agent_takes_its_handler_s_subprocesses_with_it(
    settings: Settings, tmp_path: Path
) -> None:
    """A task timing out at concurrency 1 killed its agent; the tool its handler started ran
    on, re-parented, for its whole 300 s (found in review). The agent leads a process group of
    its own now, and a kill takes the group; a timeout now stops the handler cooperatively
    (decision 127), and the agent then kills what the stopped handler left in its group."""
    marks = tmp_path / "marks"
    marks.mkdir()
    swarms = [swarm_spec("s", ["x"], agents=1)]
    async with worker_system(settings, swarms, tmp_path, allowed_handlers=["tests."]) as system:
        spec = task_spec(
            "tests.integration.agent_handlers:run_tool",
            id="tool",
            capabilities=["x"],
            timeout_ms=1500,
            max_attempts=1,
        )
        await system.store.submit([(spec, {"dir": str(marks)})])
        child = marks / "tool.child"

        async def started() -> bool:
            return child.exists() and child.read_text() != ""

        await eventually(started, timeout_s=60, what="the tool started")
        pid = int(child.read_text())

        async def ended() -> bool:
            return (await system.store.get("tool")).status == "dead"

        await eventually(ended, timeout_s=30, what="the task timed out")

        async def tool_gone() -> bool:
            return not _pid_alive(pid)

        await eventually(tool_gone, timeout_s=10, what="the tool killed with its agent")
