"""The same lifecycle on a Redis started by testcontainers, where a Docker engine answers.

Docker is optional: without an engine the test is skipped with the reason; the private
redis-server fixtures cover everything else.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader

pytestmark = pytest.mark.docker


def _docker_answers() -> str | None:
    """None when a Docker engine answers /_ping, else the reason to skip."""
    import os
    import socket

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None  # a remote engine: let testcontainers try it
    path = host[len("unix://") :]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            if b"OK" not in s.recv(1024):
                return f"the Docker engine at {path} did not answer /_ping with OK"
    except OSError as e:
        return f"no Docker engine answers at {path} ({e.strerror or e})"
    return None


@pytest.fixture(scope="module")
def container_url() -> Iterator[str]:
    reason = _docker_answers()
    if reason:
        pytest.skip(reason)
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:7-alpine") as redis:
        yield f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"


async def test_lifecycle_on_a_container(container_url: str, namespace: str) -> None:
    client = connect(Settings(redis_url=container_url, namespace=namespace))
    scripts, keys = Scripts(client), Keys(namespace)
    store = TaskStore(scripts, keys)
    try:
        await host(scripts, keys, "w1", ("s", []))
        coord = await leader(scripts, keys)
        await store.submit([(task_spec("multiswarm.demo_tasks:noop", id="t"), 1)])
        assert await coord.dispatch_once() == 1
        (c,) = await store.claim("s", "w1", 1)
        assert await store.complete("t", c.token, "w1", 2) == "completed"
    finally:
        await client.aclose()
