"""Fixtures shared by integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.keys import Keys
from multiswarm.registry import swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from multiswarm.tasks import TaskStore
from tests.faults.inprocess import worker_system


@pytest.fixture
async def flaky(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[TaskStore, Path]]:
    """A worker hosting swarm ``s`` (capability ``x``) that may run the test handlers, and the
    flag file that makes ``fail_while_file_exists`` fail while it exists (set)."""
    flag = tmp_path / "flag"
    flag.touch()
    swarms = [swarm_spec("s", ["x"], agents=1)]
    async with worker_system(
        settings, swarms, tmp_path, allowed_handlers=["tests.handlers:", "multiswarm."]
    ) as system:
        yield system.store, flag


@pytest.fixture
def manager(scripts: Scripts, keys: Keys) -> SwarmStateManager:
    """A state manager on the test's namespace that recovers plans of confidence 0.75 or more."""
    return SwarmStateManager(scripts, keys, auto_recover_min_confidence=0.75)
