"""Private servers' ports: chosen below the kernel's ephemeral range, and a Sentinel whose port
was taken before it bound starts again on another (CI once lost a run to such a Sentinel)."""

from __future__ import annotations

import socket

import pytest

from multiswarm.redis_server import ephemeral_low, free_port
from multiswarm.redis_topologies import SentinelGroup, cluster_port

pytestmark = pytest.mark.slow


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    low = ephemeral_low()
    for _ in range(50):
        port = free_port()
        assert 20000 <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free when returned
        bus = cluster_port()
        assert bus + 10000 < low


def test_ports_drawn_before_any_binds_are_all_different() -> None:
    # a cluster's nodes and a Sentinel group draw every port before the first server binds
    nodes = [cluster_port() for _ in range(300)]
    others = [free_port() for _ in range(1000)]
    taken = nodes + [n + 10000 for n in nodes] + others
    assert len(set(taken)) == len(taken)


def test_a_sentinel_whose_port_was_taken_starts_on_another() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        group = SentinelGroup(replicas=0)
        group.sentinel_ports[1] = taken
        with group:
            assert taken not in group.sentinel_ports
            assert group.current_master_port() == group.master.port
