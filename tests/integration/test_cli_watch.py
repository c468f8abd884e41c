"""``status --watch`` and ``tasks list --watch`` as an operator runs them: a process that
refreshes until Ctrl-C (SIGINT) or SIGTERM and then exits 0 without a traceback; with
``--json`` one JSON document per line per refresh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from multiswarm.config import Settings
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, reap


def _watch(settings: Settings, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MULTISWARM_REDIS_URL": settings.redis_url}
    return subprocess.Popen(
        [sys.executable, "-m", "multiswarm", "--namespace", settings.namespace, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _out, err = proc.communicate(timeout=30)
    finally:
        reap(proc)
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_status_watch_json_lines_until_signal(
    settings: Settings, scripts: Scripts, keys: Keys, sig: int
) -> None:
    await host(scripts, keys, "w1", ("s", []))
    proc = _watch(settings, "status", "--watch", "0.2", "--json")
    assert proc.stdout is not None
    docs = [json.loads(proc.stdout.readline()) for _ in range(3)]  # three refreshes
    assert all(d["swarms"][0]["id"] == "s" for d in docs)
    code, err = _stop(proc, sig)
    assert code == 0 and "Traceback" not in err, err


async def test_tasks_list_watch_text_follows_changes(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    proc = _watch(settings, "tasks", "list", "--watch", "0.2")
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the table's top border: the first view is out
    assert first.strip()
    await TaskStore(scripts, keys).submit([(task_spec("m.x:f", id="late-task"), 1)])
    seen = ""
    while "late-task" not in seen:  # a later refresh shows it (the test's timeout bounds this)
        line = proc.stdout.readline()
        assert line, "the watcher ended"
        seen += line
    code, err = _stop(proc, signal.SIGTERM)
    assert code == 0 and "Traceback" not in err, err


def test_watch_refuses_a_bad_interval(settings: Settings) -> None:
    proc = _watch(settings, "status", "--watch", "0")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--watch" in err and "Traceback" not in err


def test_status_watch_on_a_terminal_redraws_until_ctrl_c(settings: Settings) -> None:
    """On a terminal the view is redrawn in place (rich Live); Ctrl-C ends it with exit 0."""
    import pty
    import select

    env = {**os.environ, "MULTISWARM_REDIS_URL": settings.redis_url}
    args = ["-m", "multiswarm", "--namespace", settings.namespace, "status", "--watch", "0.2"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal on stdin/stdout/stderr
        os.execve(sys.executable, [sys.executable, *args], env)
    out = b""
    try:
        while out.count(b"namespace " + settings.namespace.encode()) < 2:  # two views drawn
            select.select([fd], [], [], 30)
            chunk = os.read(fd, 65536)
            assert chunk, out.decode(errors="replace")
            out += chunk
        os.kill(pid, signal.SIGINT)
        while True:  # drain until the child closes the terminal
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child is gone
                break
            if not chunk:
                break
            out += chunk
    finally:
        _pid, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"Traceback" not in out and b"\x1b[" in out  # redrawn with cursor moves
