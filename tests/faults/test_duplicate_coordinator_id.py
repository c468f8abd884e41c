"""Two coordinators started with the same ``--id`` both led, with the same epoch.

acquire_leadership.lua treated "the lease names my id" as "I hold it" and extended it, so a
second process with that id believed it led too and both passed the fencing check. Now the lease
records which process took it; another process with the same id is refused, and
``multiswarm-cli run coordinator --id X`` exits non-zero with a one-line error naming X.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import LeaderElection, current_leader
from multiswarm.errors import MultiswarmError
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts


async def test_same_id_in_another_process_is_refused(scripts: Scripts, keys: Keys) -> None:
    first = LeaderElection(scripts, keys, 30_000, holder_id="dup")
    twin = LeaderElection(scripts, keys, 30_000, holder_id="dup")
    assert await first.try_acquire()
    with pytest.raises(MultiswarmError, match="dup"):
        await twin.try_acquire()
    assert not twin.is_leader
    assert await first.try_acquire() and first.epoch == 1  # the holder itself is still fine
    assert not await twin.renew() and not await twin.release()
    info, _ = await current_leader(scripts, keys)
    assert info is not None and (info.holder, info.epoch) == ("dup", 1)
    assert await first.renew()


def test_cli_exits_non_zero_naming_the_id(settings: Settings) -> None:
    assert asyncio.run(_acquire(settings, "c-dup"))  # a live coordinator leads as c-dup
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multiswarm",
            "--redis-url",
            settings.redis_url,
            "--namespace",
            settings.namespace,
            "run",
            "coordinator",
            "--id",
            "c-dup",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"the second c-dup kept running (it believes it leads): {err[-2000:]}")
    assert proc.returncode != 0, err
    assert "Traceback" not in err, err
    assert [ln for ln in err.splitlines() if "c-dup" in ln and "already" in ln], err


async def _acquire(settings: Settings, holder: str) -> bool:
    client = connect(settings)
    try:
        return await LeaderElection(
            Scripts(client), Keys(settings.namespace), 60_000, holder_id=holder
        ).try_acquire()
    finally:
        await client.aclose()
