"""The agents' fork server: what it preloads, and the early guess of ``run worker``."""

from __future__ import annotations

from multiswarm import agent_server
from multiswarm.handlers import DEFAULT_IMPORTS


def test_the_server_preloads_the_runtime_and_the_default_handlers() -> None:
    assert set(agent_server.PRELOAD) >= {"multiswarm.agent_runtime", *DEFAULT_IMPORTS}


def test_run_worker_is_guessed_with_options_anywhere() -> None:
    assert agent_server.starts_worker(["run", "worker", "--swarm", "s"])
    assert agent_server.starts_worker(["--namespace", "n", "-v", "run", "worker"])
    assert not agent_server.starts_worker(["run", "coordinator", "--id", "c1"])
    assert not agent_server.starts_worker(["status"])
    assert not agent_server.starts_worker(["worker", "run"])
