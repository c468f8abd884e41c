"""How durable writes wait for replicas: WAIT, or WAITAOF when asked for and the server has it."""

from __future__ import annotations

import pytest

from multiswarm.config import from_env
from multiswarm.errors import ConfigError
from multiswarm.scripts import ack_command, replicas_acked


def test_waitaof_asks_replicas_only_and_counts_them() -> None:
    assert ack_command(True, 2, 500) == ["WAITAOF", 0, 2, 500]
    assert ack_command(False, 2, 500) == ["WAIT", 2, 500]
    assert replicas_acked([0, 2]) == 2  # WAITAOF: [local fsyncs, replica fsyncs]
    assert replicas_acked(1) == 1


def test_wait_aof_is_a_flag_that_needs_replicas() -> None:
    env = {"MULTISWARM_WAIT_REPLICAS": "1", "MULTISWARM_WAIT_AOF": "1"}
    assert from_env(env).wait_aof
    assert not from_env({}).wait_aof
    with pytest.raises(ConfigError, match="needs MULTISWARM_WAIT_REPLICAS"):
        from_env({"MULTISWARM_WAIT_AOF": "1"})
    with pytest.raises(ConfigError, match="must be 0 or 1"):
        from_env({**env, "MULTISWARM_WAIT_AOF": "yes"})
