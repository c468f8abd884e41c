"""Shutdown is bounded whatever Redis does (issue 14, item 11): a role process SIGTERM'd while
its Redis is stopped (SIGSTOP: commands hang) or gone exits within its grace plus 5 s, and
the last line it writes to stderr is a one-line message, not a traceback.

The bound on process exit is the feature under test (Kubernetes SIGKILLs after 30 s), not a
performance figure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from multiswarm.redis_server import RedisServer, environment_without_redis
from tests.integration.helpers import reap

pytestmark = pytest.mark.slow

GRACE_S = 1.0
#: role -> its `run` arguments and the key whose presence says it is serving (None: the API,
#: which writes none, serves once it prints its address)
ROLES: dict[str, tuple[list[str], str | None]] = {
    "worker": (
        ["worker", "--id", "w", "--swarm", "s:work:1", "--grace-s", str(GRACE_S)],
        "workers",
    ),
    "coordinator": (["coordinator", "--id", "c"], "leader"),
    "registry": (["registry"], "deployment"),
    "state-manager": (["state-manager"], "deployment"),
    "api": (["api", "--port", "0"], None),
}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(signal.SIGCONT)  # so that stopping it can finish


def _serving(client: redis.Redis, namespace: str, key: str) -> bool:
    return client.exists(f"{{{namespace}}}:{key}") == 1


@pytest.mark.parametrize("outage", ["sigstop", "kill"])
@pytest.mark.parametrize("role", sorted(ROLES))
def test_a_sigtermed_role_exits_in_bounded_time_with_redis_down(
    server: RedisServer, tmp_path: Path, role: str, outage: str
) -> None:
    args, key = ROLES[role]
    namespace = f"out{os.getpid()}{role.replace('-', '')}"
    env = {**environment_without_redis(), "MULTISWARM_REDIS_URL": server.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "multiswarm", "--namespace", namespace, "run", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL if key else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = redis.Redis.from_url(server.url)
    try:
        if key is None:
            assert proc.stdout is not None
            assert "http://" in proc.stdout.readline()
        deadline = time.monotonic() + 60
        while key is not None and not _serving(client, namespace, key):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, f"{role} never started serving"
            time.sleep(0.1)
        time.sleep(0.5)  # into its loops
        assert server.proc is not None
        if outage == "sigstop":
            server.proc.send_signal(signal.SIGSTOP)
        else:
            server.kill()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        bound_s = (GRACE_S if role == "worker" else 0.0) + 5.0
        try:
            _, err = proc.communicate(timeout=bound_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"{role} still running {bound_s} s after SIGTERM: {err[-3000:]}")
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert "Traceback" not in last and not last.startswith(" "), err[-3000:]
        if proc.returncode != 0:
            assert last.startswith("multiswarm: error: "), err[-3000:]
    finally:
        client.close()
        reap(proc)
