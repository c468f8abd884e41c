"""An unexpected exception in any loop of a worker stops the worker, clearly and cleanly.

Before, a loop that raised anything but a MultiswarmError died silently as a background task while
the others went on: a worker whose claim loop had died kept beating (a zombie holding its swarms
and claiming nothing), one whose renewal loop had died lost every lease while looking healthy.
Now the worker hands back what it holds, leaves the registry and fails with an error naming the
loop; ``multiswarm-cli run worker`` exits 1 with that error as its last line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from multiswarm.config import Settings
from multiswarm.errors import WorkerFailed
from multiswarm.messenger import SwarmMessenger
from multiswarm.registry import swarm_spec
from multiswarm.tasks import task_spec
from tests.faults.inprocess import System, worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow

SLEEP = "multiswarm.demo_tasks:sleep_then_return"


async def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


def _boom_now(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


async def _inject(system: System, loop: str) -> None:
    w = system.worker
    if loop == "claim":
        w.tasks.claim = _boom  # type: ignore[method-assign]
        # and the claims that wait in Redis for an assignment (the one waiting now runs as it
        # was sent; the loop's next one fails)
        w.tasks.claim_when_woken = _boom  # type: ignore[method-assign]
        # claim loops claim when told to (no polling): an assignment for the free agent
        await system.store.submit([(task_spec(SLEEP, id="next", capabilities=["x"]), {})])
    elif loop == "renewal":
        w.tasks.extend = _boom  # type: ignore[method-assign]
    elif loop == "heartbeat":
        w.registry.heartbeat = _boom  # type: ignore[method-assign]
    elif loop == "progress":
        w.state.update_state = _boom  # type: ignore[method-assign]
    elif loop == "supervision":
        w._recover_soon = _boom_now  # type: ignore[method-assign]
        idle = next(
            a for i, a in enumerate(w.placement["s"].agents) if not w.placement["s"].load[i]
        )
        os.kill(idle.pid, signal.SIGKILL)  # a dead agent: the supervisor must act on it
    elif loop == "listen":
        w.registry.get = _boom  # type: ignore[method-assign]
        await SwarmMessenger(system.store.client, system.keys).publish(
            system.keys.ch_tasks, "swarm_scaled", {"swarm": "s"}, target="s"
        )


@pytest.mark.parametrize(
    "loop", ["claim", "renewal", "heartbeat", "progress", "supervision", "listen"]
)
async def test_a_failing_loop_stops_the_worker(
    settings: Settings, loop: str, tmp_path: Path
) -> None:
    settings = settings.replace(heartbeat_timeout_ms=1500, lease_ms=2000)
    async with worker_system(settings, [swarm_spec("s", ["x"], agents=2)], tmp_path) as system:
        await system.store.submit(
            [(task_spec(SLEEP, id="long", capabilities=["x"], lease_ms=1000), {"seconds": 60})]
        )
        await system.running("long")
        await _inject(system, loop)

        done, _ = await asyncio.wait([system.run], timeout=30)
        assert done, f"the worker did not stop after its {loop} loop failed (a zombie)"
        with pytest.raises(WorkerFailed) as failed:
            system.run.result()
        assert loop in str(failed.value) and "RuntimeError: injected fault" in str(failed.value)
        assert "\n" not in str(failed.value)
        # it left: not registered any more, and the running task was handed back unrun
        assert await system.store.client.hkeys(system.keys.workers) == []
        t = await system.store.get("long")
        assert t.status != "running" and t.attempts == 0, (t.status, t.attempts, t.reason)


def _start_faulty_worker(settings: Settings, stderr: Path) -> subprocess.Popen[bytes]:
    with open(stderr, "wb") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.faulty_worker",
                "--redis-url",
                settings.redis_url,
                "--namespace",
                settings.namespace,
                "run",
                "worker",
                "--id",
                "w1",
                "--swarm",
                "s:x:1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, HEARTBEAT_INTERVAL="1500"),
        )


async def test_run_worker_exits_1_with_a_one_line_error(settings: Settings, tmp_path: Path) -> None:
    """The real CLI in a child process, with the claim of tasks made to fail unexpectedly."""
    stderr = tmp_path / "worker.err"
    proc = _start_faulty_worker(settings, stderr)
    code: int | None = None
    try:
        code = await asyncio.to_thread(proc.wait, 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert code is not None, "run worker still running 60 s after its claim loop failed (a zombie)"
    lines = [ln for ln in stderr.read_text().splitlines() if ln.strip()]
    assert code == 1, lines[-5:]
    assert "claim" in lines[-1] and "RuntimeError: injected fault" in lines[-1], lines[-5:]

    from multiswarm.connection import connect
    from multiswarm.keys import Keys

    client = connect(settings)
    try:

        async def left() -> bool:
            return await client.hkeys(Keys(settings.namespace).workers) == []

        await eventually(left, timeout_s=5, what="w1 leaving the registry")
    finally:
        await client.aclose()
