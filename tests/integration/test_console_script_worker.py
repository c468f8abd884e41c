"""``multiswarm-cli run worker`` as the README prints it: through the installed console script.

Agents are forked by a fork server, which prepares each by running the parent's main script
again as ``__mp_main__``; with the console script that re-imports :mod:`multiswarm.cli`, whose
start-up block started the fork server again inside the half-born agent ("bootstrapping
phase"): every agent died at its start and no task ran, while ``python -m multiswarm run
worker`` (what ``up``, ``demo`` and the other tests start) worked (found in session 21's CLI
review).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import eventually

pytestmark = pytest.mark.slow


def _console_script(tmp_path: Path) -> list[str]:
    """The installed ``multiswarm-cli``, or a copy of pip's wrapper of it (the same code)."""
    found = shutil.which("multiswarm-cli")
    if found is not None:
        return [found]
    wrapper = tmp_path / "multiswarm-cli"
    wrapper.write_text(
        "import sys\nfrom multiswarm.cli import main\nif __name__ == '__main__':\n"
        "    sys.exit(main())\n"
    )
    return [sys.executable, str(wrapper)]


async def test_the_console_script_s_worker_runs_tasks(
    settings: Settings, tmp_path: Path, scripts: Scripts, keys: Keys
) -> None:
    store = TaskStore(scripts, keys)
    group = ProcessGroup(settings, tmp_path)
    group.spawn("coordinator", ["coordinator", "--id", "c1"])
    env = {**os.environ, "MULTISWARM_REDIS_URL": settings.redis_url}
    log = (tmp_path / "worker.log").open("ab")
    role = ["run", "worker", "--id", "w1", "--swarm", "s:c:1"]
    worker = subprocess.Popen(
        [*_console_script(tmp_path), "--namespace", settings.namespace, *role],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await store.submit(
            [(task_spec("multiswarm.demo_tasks:noop", id="t1", capabilities=["c"]), {})]
        )

        async def completed() -> bool:
            return (await store.get("t1")).status == "completed"

        await eventually(
            completed, timeout_s=60, what="the task run by the console script's worker"
        )
        assert "bootstrapping phase" not in (tmp_path / "worker.log").read_text()
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        group.stop_all()
