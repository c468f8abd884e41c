"""The whole system (`multiswarm-cli demo --json`: registry, two coordinators, state manager,
workers, each its own process) stays verified — nothing lost, no duplicate completion — while
its Redis is SIGKILLed and restarted from the AOF, and while it stalls past the socket timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from multiswarm.redis_server import RedisServer, environment_without_redis
from tests.integration.helpers import reap, stdlib_corpus, wait_sync

pytestmark = pytest.mark.slow


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = stdlib_corpus(tmp_path / "corpus")
    return root


def start_demo(url: str, corpus: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multiswarm",
            "--redis-url",
            url,
            "demo",
            "--corpus",
            str(corpus),
            "--group-size",
            "4",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment_without_redis(),
    )


def wait_for_completions(url: str, at_least: int, timeout_s: float = 120.0) -> None:
    """Block until the demo's namespace has recorded ``at_least`` completions."""
    client = redis.Redis.from_url(url, socket_timeout=2)

    def enough() -> bool:
        return any(
            int(client.hget(key, "completed") or 0) >= at_least
            for key in client.scan_iter(match="*:stats", count=1000)
        )

    try:
        wait_sync(enough, timeout_s, what=f"{at_least} completions")
    finally:
        client.close()


def finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=600)
    assert out, err[-3000:]
    report: dict[str, object] = json.loads(out)
    assert proc.returncode == 0, (report, err[-3000:])
    assert report["verified"] is True, report
    assert report["tasks_lost"] == 0 and report["duplicate_completions"] == 0, report
    return report


def test_demo_verified_through_a_redis_restart(own_redis: RedisServer, corpus: Path) -> None:
    proc = start_demo(own_redis.url, corpus)
    try:
        wait_for_completions(own_redis.url, 20)
        own_redis.kill()  # SIGKILL: only the AOF (appendfsync always) survives
        own_redis.start()
        finish(proc)
    finally:
        reap(proc)


def test_demo_verified_through_a_stall(stallable_redis: RedisServer, corpus: Path) -> None:
    """DEBUG SLEEP 7 s: longer than the 5 s socket timeout, so every process's calls in flight
    time out and are retried with their request ids while the server is frozen."""
    proc = start_demo(stallable_redis.url, corpus)
    try:
        wait_for_completions(stallable_redis.url, 20)
        client = redis.Redis.from_url(stallable_redis.url, socket_timeout=30)
        try:
            client.execute_command(  # type: ignore[no-untyped-call]
                "DEBUG", "SLEEP", "7"
            )
        finally:
            client.close()
        finish(proc)
    finally:
        reap(proc)
