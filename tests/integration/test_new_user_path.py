"""A new user's path end to end (issue 14), in a temp directory holding ``myapp/tasks.py``: the
README's ``multiswarm-cli up`` line started there, the README's Python example run verbatim,
then, through the CLI, a running task cancelled (its handler really stops) and a dead task
retried to completion. ``myapp/tasks.py`` is the README's block plus two handlers of the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multiswarm.redis_server import RedisServer
from tests.integration.helpers import wait_sync
from tests.integration.test_readme_example import readme_system, run_readme_example

pytestmark = pytest.mark.slow

EXTRA_HANDLERS = '''

import time as _time
from pathlib import Path as _Path


@multiswarm.handler
def slow(payload, ctx):
    """Runs until stopped; says so in a file when it is."""
    try:
        while True:
            _time.sleep(0.05)
    finally:
        _Path(payload["stopped"]).write_text("stopped")


@multiswarm.handler
def flaky(payload, ctx):
    """Fails while the flag file exists."""
    if _Path(payload["flag"]).exists():
        raise RuntimeError("flag is set")
    return "done"
'''


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "multiswarm", *args, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, (args, run.stdout, run.stderr)
    return run.stdout


def _until(env: dict[str, str], cwd: Path, task_id: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        task: dict[str, object] = json.loads(_cli(env, cwd, "tasks", "show", task_id))
        if task["status"] == status:
            return task
        assert time.monotonic() < deadline, f"{task_id} not {status}: {task}"
        time.sleep(0.2)


def test_a_new_users_path(redis_server: RedisServer, tmp_path: Path) -> None:
    namespace = f"newuser{os.getpid()}"
    with readme_system(redis_server, tmp_path, namespace, EXTRA_HANDLERS) as env:
        lines = run_readme_example(tmp_path, env)
        assert lines[0] == "{'files': 1, 'identifiers': 3}", lines

        # a running task cancelled: its handler stops (its finally block runs)
        stopped = tmp_path / "stopped"
        payload = json.dumps({"stopped": str(stopped)})
        sub = json.loads(
            _cli(env, tmp_path, "tasks", "submit", "myapp.tasks:slow", "--cap", "parse",
                 "--payload", payload)
        )  # fmt: skip
        _until(env, tmp_path, sub["id"], "running")
        assert json.loads(_cli(env, tmp_path, "tasks", "cancel", sub["id"]))["outcome"] == (
            "cancelled"
        )
        wait_sync(stopped.exists, timeout_s=30, what="the cancelled handler's finally block")

        # a dead task retried to completion
        flag = tmp_path / "flag"
        flag.touch()
        sub = json.loads(
            _cli(env, tmp_path, "tasks", "submit", "myapp.tasks:flaky", "--cap", "parse",
                 "--max-attempts", "1", "--payload", json.dumps({"flag": str(flag)}))
        )  # fmt: skip
        _until(env, tmp_path, sub["id"], "dead")
        flag.unlink()
        retried = json.loads(_cli(env, tmp_path, "tasks", "retry", sub["id"]))
        assert retried == {sub["id"]: "retried"}
        _until(env, tmp_path, sub["id"], "completed")
