"""`multiswarm-cli up` starts the whole local system and stops all of it on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import current_leader
from multiswarm.keys import Keys
from multiswarm.messages import WorkerInfo
from multiswarm.redis_server import free_port
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts

from .helpers import eventually, reap, running

pytestmark = pytest.mark.slow


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


def _agent_pids(worker: WorkerInfo) -> list[int]:
    """The agent processes of ``worker`` named by its last heartbeat (none before the first)."""
    return [int(a["pid"]) for a in worker.agent_states.values() if a.get("pid")]


async def test_up_runs_every_role_and_sigterm_stops_them_all(settings: Settings) -> None:
    api_port = free_port()
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multiswarm.cli",
            "--redis-url",
            settings.redis_url,
            "--namespace",
            settings.namespace,
            "up",
            "--lease-ms",
            "2000",
            "--prefetch",  # handed to the workers: each swarm takes no more than its slots
            "0",
            "--api-port",
            str(api_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as from a non-interactive shell's background job: SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    client = connect(settings)
    scripts, keys = Scripts(client), Keys(settings.namespace)
    registry = SwarmRegistry(scripts, keys)
    try:

        async def ready() -> bool:
            info, _ = await current_leader(scripts, keys)
            workers = await registry.workers()
            return (
                await _listening(api_port)  # the API too: the roles may be up before it
                and info is not None
                and len(await registry.swarm_ids("active")) == 3
                and len(workers) == 2
                # a worker registers while its agents start (decision 68): wait for its first
                # heartbeat, which names every agent process (a SIGTERM during the start is
                # not what this test is about)
                and all(_agent_pids(w) and len(_agent_pids(w)) == w.agents for w in workers)
            )

        await eventually(
            ready, timeout_s=60, what="a leader, 3 active swarms and 2 workers with their agents"
        )
        # 2 agents of concurrency 1 and no prefetch: 2 tasks a swarm (6 with the default 2)
        capacities = {
            (await registry.get(sid)).capacity for sid in await registry.swarm_ids("active")
        }
        assert capacities == {2}, capacities
        workers = await registry.workers()
        pids = {w.pid for w in workers}
        agent_pids = {pid for w in workers for pid in _agent_pids(w)}
        up.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(up.communicate, None, 60)
        assert up.returncode == 0, out
        codes = out.split("stopped:", 1)[1]
        # every child exited 0: registry, two coordinators, state manager, two workers, api
        assert codes.count(": 0") == 7 and "'api': 0" in codes, codes
        assert "multiswarm api: http://127.0.0.1:" in out  # the API said where it listens
        for pid in pids:  # the workers are gone, not orphaned
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        left = [pid for pid in agent_pids if running(pid)]
        assert left == [], f"agent processes left running: {left}"
        info, _ = await current_leader(scripts, keys)
        assert info is None  # the leader released its lease on the way out
        assert await registry.workers() == []  # and the workers left the registry
    finally:
        if up.poll() is None:  # failed before the SIGTERM above: let `up` stop its children
            up.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(up.communicate, None, 60)
        reap(up)
        await client.aclose()


def test_up_with_a_timing_the_deployment_disagrees_with_is_one_line(settings: Settings) -> None:
    """The deployment's stored lease differs from `--lease-ms`: a traceback before (found in
    review); one line and exit 2 now, nothing started."""
    base = [sys.executable, "-m", "multiswarm.cli", "--redis-url", settings.redis_url]
    base += ["--namespace", settings.namespace]
    stored = subprocess.run(
        [*base, "config", "set", "lease_ms=30000"], capture_output=True, text=True, timeout=60
    )
    assert stored.returncode == 0, stored.stderr
    done = subprocess.run(
        [*base, "up", "--lease-ms", "5000", "--no-api"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "MULTISWARM_LEASE_MS=5000 (deployment: 30000)" in line
