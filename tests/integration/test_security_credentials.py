"""The Redis password never shows: not in output, not in log files, not on a command line.

``up`` and ``demo`` run against a private password-protected redis-server with the URL given
through ``MULTISWARM_REDIS_URL``. Every descendant's ``/proc/<pid>/cmdline`` (what ``ps`` shows
to every local user) is read while the system runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import current_leader
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer, environment_without_redis
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts

from .helpers import eventually, reap

pytestmark = pytest.mark.slow

#: A password no other text contains, so finding it anywhere is a leak.
PASSWORD = f"pw-{uuid.uuid4().hex}"


@pytest.fixture
def secured() -> Iterator[RedisServer]:
    with RedisServer(requirepass=PASSWORD) as server:
        yield server


def _parent(pid: str) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces


def descendant_cmdlines(root: int) -> dict[int, bytes]:
    """Command line of every live descendant of ``root`` (pid -> NUL-separated argv)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(_parent(entry), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
    out: dict[int, bytes] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline:  # empty for a zombie
            out[pid] = cmdline
        todo += children.get(pid, [])
    return out


def _env(url: str) -> dict[str, str]:
    return {**environment_without_redis(), "MULTISWARM_REDIS_URL": url}


def _assert_no_password(where: str, text: str | bytes) -> None:
    raw = text if isinstance(text, bytes) else text.encode()
    assert PASSWORD.encode() not in raw, f"the Redis password appears in {where}"


async def test_up_keeps_the_password_out_of_output_and_command_lines(secured: RedisServer) -> None:
    url = secured.url_for(password=PASSWORD)
    namespace = f"t{uuid.uuid4().hex[:10]}"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multiswarm.cli",
            "--namespace",
            namespace,
            "up",
            "--lease-ms",
            "2000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(url),
    )
    client = connect(Settings(redis_url=url, namespace=namespace))
    scripts, keys = Scripts(client), Keys(namespace)
    registry = SwarmRegistry(scripts, keys)
    try:

        async def ready() -> bool:
            info, _ = await current_leader(scripts, keys)
            return (
                info is not None
                and len(await registry.swarm_ids("active")) == 3
                and len(await registry.workers()) == 2
            )

        await eventually(ready, timeout_s=90, what="a leader, 3 active swarms and 2 workers")
        cmdlines = descendant_cmdlines(up.pid)
        # registry, two coordinators, state manager, two workers, and the workers' agents
        roles = [c for c in cmdlines.values() if b"multiswarm" in c and b"run" in c]
        assert len(roles) >= 6, cmdlines
        for pid, cmdline in cmdlines.items():
            _assert_no_password(f"the command line of {pid}: {cmdline!r}", cmdline)
        up.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(up.communicate, None, 60)
        assert up.returncode == 0, out
        _assert_no_password("the output of up", out)
        assert b"redis://:***@127.0.0.1" in out  # still says where it runs
    finally:
        reap(up)
        await client.aclose()


def test_demo_keeps_the_password_out_of_output_logs_and_command_lines(
    secured: RedisServer, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(
        Path(sysconfig.get_paths()["stdlib"]) / "json",
        corpus,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multiswarm.cli",
            "-v",
            "demo",
            "--corpus",
            str(corpus),
            "--group-size",
            "4",
            "--keep-logs",  # every log file is searched for the password below
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(secured.url_for(password=PASSWORD)),
    )
    seen: dict[int, bytes] = {}
    finished = threading.Event()

    def watch() -> None:  # sample the process tree for as long as the demo runs
        while not finished.wait(0.2):
            seen.update(descendant_cmdlines(demo.pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out, err = demo.communicate(timeout=600)
    finally:
        finished.set()
        watcher.join(timeout=10)
        reap(demo)
    assert demo.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["verified"] is True and report["tasks_lost"] == 0
    assert sum(b"run" in c and b"worker" in c for c in seen.values()) >= 2, seen
    for pid, cmdline in seen.items():
        _assert_no_password(f"the command line of {pid}: {cmdline!r}", cmdline)
    _assert_no_password("the demo's stdout", out)
    _assert_no_password("the demo's stderr", err)
    assert report["redis_url"] == "redis://:***@" + secured.url.split("://", 1)[1]
    logs = [p for p in Path(report["logs"]).rglob("*") if p.is_file()]
    assert logs
    for log in logs:
        _assert_no_password(f"log file {log}", log.read_bytes())
    shutil.rmtree(report["logs"])
