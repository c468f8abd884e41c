"""Wake-ups read directly off the socket (decision 62) over TLS, as the least-privilege ACL
user of deploy/acl.conf: redis-py's handshake, then the listener on the TLS transport."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer
from multiswarm.wakeups import _direct, wake_on

# skipped with it where cryptography is missing
from .test_security_tls_acl import PASSWORD, USER, acl_file, make_certificates


async def test_wake_ups_over_tls_as_the_acl_user(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    tls = make_certificates(tmp_path / "tls", ["127.0.0.1", "localhost"])
    with RedisServer(tls=tls, aclfile=acl_file(tmp_path)) as server:
        settings = Settings(redis_url=server.url_for(USER, PASSWORD), namespace="swarm")
        client = connect(settings)
        keys = Keys("swarm")
        assert _direct(client)
        woken = asyncio.Event()
        waiter = asyncio.create_task(wake_on(client, keys, {keys.wake_leader: woken}))
        try:
            await asyncio.wait_for(woken.wait(), 10)  # the subscription itself: look once
            woken.clear()
            assert await client.publish(keys.wake_leader, "") == 1
            await asyncio.wait_for(woken.wait(), 10)
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            await client.aclose()
