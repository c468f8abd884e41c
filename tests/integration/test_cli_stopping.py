"""How `up` and `demo` end (session 21's CLI review, findings 3, 5 and 6): a role that dies is
a failure of `up`; Ctrl-C and SIGTERM end `up` at once while Redis does not answer; SIGTERM to
`demo` stops every process it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.redis_server import environment_without_redis, free_port

from .helpers import reap, running, wait_sync

pytestmark = pytest.mark.slow


def _cli(
    settings: Settings | None, *args: str, tmpdir: Path | None = None
) -> subprocess.Popen[str]:
    base = [sys.executable, "-m", "multiswarm.cli"]
    if settings is not None:
        base += ["--redis-url", settings.redis_url, "--namespace", settings.namespace]
    env = environment_without_redis()
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)  # where the demo keeps the logs of a run that did not verify
    return subprocess.Popen(
        [*base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout_s: float) -> str:
    """Read ``proc``'s stdout until a line contains ``text``; what was read."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout_s), f"{text!r} not printed: {''.join(seen)}"
    return "".join(seen)


# -- finding 5 -----------------------------------------------------------------------------------
def test_up_exits_1_naming_the_role_that_died(settings: Settings) -> None:
    """Exit 0 and no word of it before: `stopped: {'registry': -9, ...}` and rc 0."""
    up = _cli(settings, "up", "--no-api", "--workers", "1", "--swarms", "1", "--agents", "1")
    started: set[int] = set()
    try:
        registry = wait_sync(
            lambda: next((p for p in _children(up.pid) if " run registry" in _cmdline(p)), None),
            timeout_s=60,
            what="the registry process",
        )
        started = _descendants(up.pid)
        os.kill(registry, signal.SIGKILL)
        out, err = up.communicate(timeout=60)
        assert up.returncode == 1, (out, err)
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1] == (
            "Error: registry was killed by SIGKILL; stopped the rest"
        ), err
        assert "'registry': -9" in out  # the others were stopped
        left = [pid for pid in started if running(pid)]
        assert left == [], left
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                up.communicate(timeout=60)
        reap(up)
        _kill_all({p for p in started if running(p)})


# -- finding 6 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_stops_at_once_while_redis_does_not_answer(sig: signal.Signals) -> None:
    """`up` kept retrying for the whole reconnect window (60 s) after Ctrl-C or SIGTERM before."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    up = _cli(None, "--redis-url", url, "up", "--no-api")
    try:
        before = _wait_for_line(up, "(configured)", timeout_s=30)  # handlers in, Redis tried
        time.sleep(1.0)  # well into the retries
        up.send_signal(sig)
        sent = time.monotonic()
        try:
            out, err = up.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`up` still running 15 s after {sig.name}")
        assert time.monotonic() - sent < 5
        assert up.returncode == 0, err
        assert "Traceback" not in err and "Error:" not in err, err
        assert f"up: stopped by {sig.name} before the system started" in before + out
    finally:
        reap(up)


# -- finding 3 -----------------------------------------------------------------------------------
def test_sigterm_to_demo_stops_every_process_it_started(settings: Settings, tmp_path: Path) -> None:
    """The demo died alone before: its registry, coordinators, state manager, workers and
    their agents lived on, re-parented to PID 1."""
    # the stdlib: a long run
    demo = _cli(settings, "demo", "--agents", "1", "--json", tmpdir=tmp_path)
    started: set[int] = set()
    try:

        def agents_up() -> bool:
            # registry, 2 coordinators, state manager, 2 workers; and agents under workers
            roles = _children(demo.pid)
            return len(roles) >= 6 and all(_children(w) for w in roles if " worker" in _cmdline(w))

        wait_sync(agents_up, timeout_s=120, what="the demo's roles and agents")
        started = _descendants(demo.pid)
        demo.send_signal(signal.SIGTERM)
        _, err = demo.communicate(timeout=60)
        assert "Traceback" not in err, err[-3000:]
        assert demo.returncode == 1, err[-3000:]
        assert err.strip().splitlines()[-1] == (
            "Error: demo stopped by SIGTERM; its processes are stopped"
        ), err[-3000:]
        wait_sync(
            lambda: not [pid for pid in started if running(pid)],
            timeout_s=25,
            what="every process of the demo gone",
        )
        assert f"logs kept in {tmp_path}" in err  # its `finally` blocks ran
    finally:
        if demo.poll() is None:
            demo.kill()
        reap(demo)
        _kill_all({p for p in started if running(p)})
