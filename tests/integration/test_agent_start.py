"""Agents forked by the fork server ``run worker`` starts first (decision 68): which modules a
command line preloads, and, in a process of its own (the fork server is per process), agents
that run tasks, die alone and restart, with a handler module that raises at import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from multiswarm.agent_start import worker_modules

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_command_line_names_its_handler_modules() -> None:
    argv = ["--namespace", "n", "run", "worker", "--id", "w1", "--import", "app.tasks"]
    argv += ["--allow-handlers", "peer_tasks:", "--allow-handlers=app.more.", "--import=b"]
    assert worker_modules(argv) == ["app.tasks", "peer_tasks", "b"]
    assert worker_modules(["run", "worker"]) == []
    assert worker_modules(["run", "coordinator", "--import", "x"]) is None
    assert worker_modules(["run", "worker", "--help"]) is None
    assert worker_modules(["status"]) is None


SCRIPT = """
import asyncio, os, signal, sys
from multiswarm import agent_start
agent_start.prestart(["broken_at_import", "no_such_module", "tests.integration.agent_handlers"])
from multiswarm.agents import AgentProcess
from multiswarm.messages import pack, unpack

H = "tests.integration.agent_handlers:"

async def main() -> None:
    agents = [AgentProcess(f"f.a{i}", ("tests.",), concurrency=2) for i in range(2)]
    try:
        for agent in agents:
            kind, data = await agent.run("t1", 1, H + "echo", pack({}), {}, 30.0)
            assert kind == "ok" and unpack(data)["task"] == "t1", (kind, data)
            # forked by the fork server, not by this process
            with open(f"/proc/{agent.pid}/stat") as f:
                assert int(f.read().rsplit(")", 1)[1].split()[1]) != os.getpid()
        first = agents[0].pid
        os.kill(first, signal.SIGKILL)
        kind, _ = await agents[0].run("t2", 1, H + "echo", pack({}), {}, 30.0)
        assert kind == "error", kind
        assert not agents[0].alive and agents[1].alive
        kind, _ = await agents[1].run("t3", 1, H + "echo", pack({}), {}, 30.0)
        assert kind == "ok", kind
        await agents[0].restart()
        assert agents[0].pid != first
        kind, _ = await agents[0].run("t4", 1, H + "echo", pack({}), {}, 30.0)
        assert kind == "ok", kind
    finally:
        for agent in agents:
            await agent.stop()
    print("done")

asyncio.run(main())
"""


@pytest.mark.slow
def test_forked_agents_run_die_alone_and_restart(tmp_path: Path) -> None:
    (tmp_path / "broken_at_import.py").write_text("raise RuntimeError('at import')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "done"
