"""The demo as a real process against a topology, with faults injected once the run reaches a
condition read from Redis (tasks completed), never after a fixed time."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.exceptions

from multiswarm.keys import Keys
from multiswarm.redis_server import environment_without_redis
from tests.integration.helpers import reap


class DemoProcess:
    """``multiswarm-cli demo --json`` in namespace ``namespace`` with ``env`` added."""

    def __init__(
        self, url: str, corpus: Path, namespace: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.keys = Keys(namespace)
        environ = environment_without_redis()
        environ.update(MULTISWARM_REDIS_URL=url, MULTISWARM_NAMESPACE=namespace, **(env or {}))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "multiswarm.cli",
                "demo",
                "--corpus",
                str(corpus),
                "--json",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
            start_new_session=True,  # its role processes too, so kill() ends them all
        )

    def completed(self, client: Any) -> int:
        """Tasks completed so far, read through ``client`` (0 while it cannot answer)."""
        try:
            return int(client.zcard(self.keys.task_status("completed")))
        except (redis.exceptions.RedisError, OSError):
            return 0

    def wait_until(self, what: str, check: Callable[[], bool], timeout_s: float = 300.0) -> None:
        """Poll ``check`` while the demo runs; fail if the demo ends first or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"demo ended before {what}: {out[-2000:]} {err[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {timeout_s} s")
            time.sleep(0.05)

    def report(self, timeout_s: float = 600.0) -> dict[str, Any]:
        """The demo's JSON report once it ends (its exit status as ``returncode``)."""
        out, err = self.proc.communicate(timeout=timeout_s)
        assert out, err[-4000:]
        report: dict[str, Any] = json.loads(out)
        report["returncode"] = self.proc.returncode
        report["stderr_tail"] = err[-4000:]
        return report

    def kill(self) -> None:
        """SIGKILL the demo and the role processes it started (one process group)."""
        if self.proc.poll() is None:  # ended by itself, it stopped its roles (and its group id
            with contextlib.suppress(ProcessLookupError):  # may be reused: no killpg then)
                os.killpg(self.proc.pid, signal.SIGKILL)
        reap(self.proc)  # its pipes closed on every path, a report read or not
