"""Test side of ops_peer.py: start peers, talk to them line by line, stop them."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from multiswarm.config import Settings

PEER = Path(__file__).with_name("ops_peer.py")
WAIT_S = 60.0


class OpsPeer:
    """One ops_peer.py child: JSON events from its stdout, commands to its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    async def event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), WAIT_S)
        if not line:
            await self.proc.wait()
            raise AssertionError(
                f"peer exited ({self.proc.returncode}); its log:\n{self.log.read_text()[-3000:]}"
            )
        event: dict[str, Any] = json.loads(line)
        return event

    async def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), WAIT_S)


Spawn = Callable[..., Awaitable[OpsPeer]]


@pytest.fixture
async def ops_peers(settings: Settings, tmp_path: Path) -> AsyncIterator[Spawn]:
    """``await ops_peers("allocate", swarm, ...)``: a started peer that printed ``ready``."""
    running: list[OpsPeer] = []

    async def spawn(*args: str) -> OpsPeer:
        log = tmp_path / f"peer-{len(running)}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(PEER),
                settings.redis_url,
                settings.namespace,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        peer = OpsPeer(proc, log)
        running.append(peer)
        event = await peer.event()
        assert event["event"] == "ready", event
        return peer

    yield spawn
    for peer in running:
        await peer.close()


async def spawn_all(spawn: Spawn, argvs: list[tuple[str, ...]]) -> list[OpsPeer]:
    """Start several peers at once (their interpreters start in parallel)."""
    return list(await asyncio.gather(*(spawn(*a) for a in argvs)))
