"""Shared helpers of the integration tests: bounded waits and a minimal elected leader."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sysconfig
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from multiswarm.config import Settings
from multiswarm.connection import Client
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts

T = TypeVar("T")

StreamEntry = tuple[bytes, dict[bytes, bytes]]
"""One entry of a stream read by a client without ``decode_responses``: (id, fields)."""


async def stream_entries(
    client: Client, key: str, start: str = "-", end: str = "+"
) -> list[StreamEntry]:
    """``XRANGE key start end`` with the reply typed as the raw bytes it is (redis-py types it
    loosely: str or bytes, and None)."""
    return cast(list[StreamEntry], await client.xrange(key, start, end))


async def hash_fields(client: Client, key: str) -> dict[bytes, bytes]:
    """``HGETALL key`` with the reply typed as the raw bytes it is."""
    return cast(dict[bytes, bytes], await client.hgetall(key))


async def hash_value(client: Client, key: str, field: str) -> bytes:
    """``HGET key field`` of a field the caller expects to exist, typed as its raw bytes."""
    return cast(bytes, await client.hget(key, field))


async def eventually(
    fn: Callable[[], Awaitable[T]],
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``fn`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s (last: {value!r})")
        await asyncio.sleep(interval_s)


def wait_sync(fn: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s (last: {value!r})")
        time.sleep(0.05)


async def leader(
    scripts: Scripts, keys: Keys, strategy: str = "least_loaded", batch_size: int = 200
) -> SwarmCoordinator:
    """A coordinator that has won the election (no background loops)."""
    coord = SwarmCoordinator(
        scripts, keys, lease_ms=30_000, strategy=strategy, batch_size=batch_size
    )
    assert await coord.election.try_acquire()
    return coord


async def host(
    scripts: Scripts,
    keys: Keys,
    worker: str,
    *swarms: tuple[str, list[str]],
    capacity: int = 100,
    priority: dict[str, str] | None = None,
) -> None:
    """Register ``worker`` as host of swarms given as (id, capabilities)."""
    prio = priority or {}
    await SwarmRegistry(scripts, keys).host_swarms(
        worker,
        {"host": "test", "pid": 0},
        [
            swarm_spec(s, caps, capacity=capacity, priority=prio.get(s, "normal"))
            for s, caps in swarms
        ],
    )


def stdlib_corpus(root: Path) -> Path:
    """A demo corpus at ``root``: copies of three stdlib packages (json, email, logging)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for pkg in ("json", "email", "logging"):
        shutil.copytree(stdlib / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def reap(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` if it still runs, wait for it and close its pipes.

    Call it in ``finally``: a pipe left open on a failure path is garbage-collected later, inside
    whichever test runs then, and pytest fails that test with its ResourceWarning.
    """
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (an exited child its dead parent never reaped); Linux
    /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def invoke_cli(settings: Settings, *args: str) -> tuple[int, str]:
    """``multiswarm-cli --redis-url ... --namespace ... ARGS`` in this process (click's runner):
    its exit code and output."""
    from click.testing import CliRunner

    from multiswarm.cli import cli

    result = CliRunner().invoke(
        cli,
        ["--redis-url", settings.redis_url, "--namespace", settings.namespace, *args],
        catch_exceptions=False,
    )
    return result.exit_code, result.output
