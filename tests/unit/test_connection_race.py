"""redis-py's asyncio cluster race (a write on a connection another command just dropped) is
retried as the outage it is; any other AttributeError is a bug and surfaces at once."""

from __future__ import annotations

from typing import Any

import pytest

from multiswarm.connection import dropped_writer, with_retry

_REDIS_WRITE = "def write(conn):\n    conn._writer.writelines([b'PING'])\n"


def _redis_write() -> Any:
    ns: dict[str, Any] = {}
    exec(compile(_REDIS_WRITE, "/site-packages/redis/asyncio/connection.py", "exec"), ns)
    return ns["write"]


class _Dropped:
    _writer = None


async def test_a_write_on_a_dropped_connection_is_retried() -> None:
    write, calls = _redis_write(), []

    async def call() -> str:
        calls.append(1)
        if len(calls) == 1:
            write(_Dropped())
        return "ok"

    assert await with_retry(call, 5.0) == "ok" and len(calls) == 2


async def test_other_attribute_errors_are_not_retried() -> None:
    calls = []

    async def call() -> None:
        calls.append(1)
        raise AttributeError("a bug")

    with pytest.raises(AttributeError, match="a bug"):
        await with_retry(call, 5.0)
    assert len(calls) == 1
    try:
        _redis_write()(_Dropped())
    except AttributeError as e:
        assert dropped_writer(e)
