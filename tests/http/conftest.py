"""Fixtures of the operations-surface tests: a real local system (registry, two coordinators,
state manager, a worker hosting two swarms) on the session's private redis-server, and the API
as its own process (``multiswarm run api --port 0``), started the way operators start it.

Each test module gets its own system in its own namespace (``system``), so counters a module
asserts on are its own; the API processes are per test module or per test as the tests need.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import msgspec
import pytest

from multiswarm.config import Settings
from multiswarm.launcher import ProcessGroup
from multiswarm.local_system import start_system
from multiswarm.redis_server import RedisServer

#: Tokens of the module-scoped API (at least 16 characters, as the server demands).
ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
#: The two swarms every test system hosts: ``alpha`` runs ``work`` tasks, ``beta`` runs ``other``.
SWARMS = ("alpha:work:1", "beta:other:1")
#: Handlers the tests submit (the workers allow ``multiswarm.`` by default).
NOOP = "multiswarm.demo_tasks:noop"
FAIL = "multiswarm.demo_tasks:fail_always"
STEPS = "multiswarm.demo_tasks:steps"
SLEEP = "multiswarm.demo_tasks:sleep_then_return"
AUTO_RECOVER = "MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE"


class ApiProcess(msgspec.Struct):
    """A running ``multiswarm run api`` and the URL it printed."""

    proc: subprocess.Popen[str]
    url: str
    output: list[str]
    drain: threading.Thread

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.drain.join(timeout=10)  # it ends at EOF, once the process is gone
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def api_command(settings: Settings, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "multiswarm",
        "--namespace",
        settings.namespace,
        "run",
        "api",
        *args,
    ]


def api_env(settings: Settings, tokens: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MULTISWARM_API_TOKEN", "MULTISWARM_API_READ_TOKEN")
    }
    env["MULTISWARM_REDIS_URL"] = settings.redis_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(tokens)
    return env


def start_api(
    settings: Settings,
    *args: str,
    tokens: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> ApiProcess:
    """Start the API on a free port and return once it printed its URL.

    Raises
    ------
    AssertionError
        It exited, or printed no URL within ``timeout_s`` (its output is in the message).
    """
    proc = subprocess.Popen(
        api_command(settings, "--port", "0", *args),
        env=api_env(settings, tokens or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            raise AssertionError(f"api printed no URL (exit {proc.returncode}): {output}")
        output.append(line)
        if line.startswith("multiswarm api: "):
            url = line.split()[2].rstrip("/")
            break
    stream = proc.stdout

    def drain() -> None:  # keep reading so a chatty server never blocks on a full pipe
        for rest in stream:
            output.append(rest)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return ApiProcess(proc, url, output, thread)


def wait_ready(url: str, headers: Mapping[str, str], swarms: int, timeout_s: float = 90.0) -> None:
    """Until health is 200 and ``swarms`` swarms are active with a worker (through the API)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    with httpx.Client(base_url=url, headers=dict(headers), timeout=10) as http:
        while time.monotonic() < deadline:
            health = http.get("/api/v1/health")
            status = http.get("/api/v1/status").json()
            last = (health.status_code, health.text, [s["status"] for s in status["swarms"]])
            active = [s for s in status["swarms"] if s["status"] == "active"]
            if health.status_code == 200 and len(active) >= swarms and status["workers"]:
                return
            time.sleep(0.2)
    raise AssertionError(f"system not ready within {timeout_s} s: {last}")


class System(msgspec.Struct):
    """A running system and its API (admin and read tokens configured)."""

    settings: Settings
    group: ProcessGroup
    api: ApiProcess
    log_dir: Path

    @property
    def url(self) -> str:
        return self.api.url

    def client(self, token: str | None = ADMIN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def system(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    settings = Settings(
        redis_url=redis_server.url,
        redis_url_explicit=True,
        namespace=f"h{uuid.uuid4().hex[:10]}",
        reconnect_timeout_s=10.0,
        lease_ms=3000,
        heartbeat_timeout_ms=6000,
    )
    log_dir = tmp_path_factory.mktemp("system")
    # the recovery test applies a plan through the API: the state manager must not beat it
    # (confidence never exceeds 0.95); the children inherit this process's environment
    saved = os.environ.get(AUTO_RECOVER)
    os.environ[AUTO_RECOVER] = "1.0"
    try:
        group = start_system(
            settings,
            workers=1,
            swarms=0,
            agents=1,
            strategy="capability",
            log_dir=log_dir,
            user_swarms=SWARMS,
        )
    finally:
        if saved is None:
            del os.environ[AUTO_RECOVER]
        else:
            os.environ[AUTO_RECOVER] = saved
    api = start_api(
        settings,
        tokens={"MULTISWARM_API_TOKEN": ADMIN, "MULTISWARM_API_READ_TOKEN": READ},
    )
    try:
        wait_ready(api.url, {"Authorization": f"Bearer {ADMIN}"}, swarms=len(SWARMS))
        yield System(settings, group, api, log_dir)
    finally:
        api.stop()
        group.stop_all()
