"""Starting role processes (``up``, ``demo``, tests): each role is its own OS process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from multiswarm.config import Settings


class RoleProcess:
    """A running ``multiswarm-cli run <role>`` child."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path | None) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


class ProcessGroup:
    """Children sharing one Redis URL and namespace; stopped together (SIGTERM, then SIGKILL).

    Parameters
    ----------
    settings:
        Passed to every child: the Redis URL through the environment (``MULTISWARM_REDIS_URL``),
        which only the same user can read, never on the command line, which ``ps`` shows every
        local user; the namespace through ``--namespace``; the log format
        (``MULTISWARM_LOG_FORMAT``) and the deployment timings through the environment too.
    log_dir:
        Where each child's output goes (``<name>.log``); None to inherit this terminal.
    env:
        More environment variables for every child (e.g. the demo's corpus directory).
    """

    def __init__(
        self,
        settings: Settings,
        log_dir: Path | None = None,
        verbose: bool = False,
        env: Mapping[str, str] | None = None,
    ):
        self.settings = settings
        self.log_dir = log_dir
        self.verbose = verbose
        self.env = dict(env or {})
        self.children: list[RoleProcess] = []

    def spawn(self, name: str, role_args: Sequence[str]) -> RoleProcess:
        cmd = [
            sys.executable,
            "-m",
            "multiswarm",
            "--namespace",
            self.settings.namespace,
            *(["-v"] if self.verbose else []),
            "run",
            *role_args,
        ]
        env = {**os.environ, **self.env}
        # the URL may hold a password: environment, not argv (docs/security.md)
        env["MULTISWARM_REDIS_URL"] = self.settings.redis_url
        env["HEARTBEAT_INTERVAL"] = str(self.settings.heartbeat_timeout_ms)
        env["MULTISWARM_TASK_LEASE_MS"] = str(self.settings.task_lease_ms)
        env["MULTISWARM_LEASE_MS"] = str(self.settings.lease_ms)
        env["MULTISWARM_PARTITIONS"] = str(self.settings.partitions)
        env["MULTISWARM_LOG_FORMAT"] = self.settings.log_format
        env["PYTHONUNBUFFERED"] = "1"
        out: IO[bytes] | int | None = None
        log = None
        if self.log_dir is not None:
            log = self.log_dir / f"{name}.log"
            out = open(log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
        )
        if out is not None and not isinstance(out, int):
            out.close()
        child = RoleProcess(name, proc, log)
        self.children.append(child)
        return child

    def kill(self, child: RoleProcess) -> None:
        """SIGKILL one child (fault injection)."""
        if child.alive():
            child.proc.send_signal(signal.SIGKILL)
            child.proc.wait(timeout=10)

    def stop_all(self, timeout_s: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every child, wait, SIGKILL stragglers. Returns name -> exit code."""
        for c in self.children:
            if c.alive():
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for c in self.children:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
        return {c.name: c.proc.returncode for c in self.children}
