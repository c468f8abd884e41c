"""Issue 12's failover checks, on the demo run as real processes: the Redis master is SIGKILLed
once some tasks have completed, and the run still verifies with nothing lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from multiswarm.redis_topologies import RedisClusterGroup, SentinelGroup
from tests.integration.helpers import stdlib_corpus
from tests.topologies.demo_process import DemoProcess

pytestmark = pytest.mark.slow

#: Completed tasks before the master is killed: the run is well under way, far from its end.
KILL_AFTER = 15


def _epoch(port: int, demo: DemoProcess) -> int | None:
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        value = client.get(demo.keys.epoch)
        return int(value) if value is not None else None
    except (redis.exceptions.RedisError, OSError):
        return None
    finally:
        client.close()


def _measures(report: dict[str, Any]) -> dict[str, Any]:
    names = (
        *("tasks_submitted", "tasks_completed", "executions", "retries", "failovers"),
        *("duplicate_results_refused", "wall_seconds", "exit_codes"),
    )
    return {k: report.get(k) for k in names}


def test_sentinel_master_killed_mid_demo_with_wait_replicas(tmp_path: Path) -> None:
    # two replicas: after the failover the other one follows the new master, so WAIT 1 still
    # has a replica to acknowledge it
    with SentinelGroup(replicas=2) as sentinel:
        demo = DemoProcess(
            sentinel.url,
            stdlib_corpus(tmp_path / "corpus"),
            "sfail",
            "--timeout-s",
            "240",  # a run whose roles died fails instead of waiting 900 s
            env={"MULTISWARM_WAIT_REPLICAS": "1", "MULTISWARM_WAIT_TIMEOUT_MS": "2000"},
        )
        epochs: list[int] = []

        def sample_epoch() -> bool:
            epoch = _epoch(sentinel.current_master_port(), demo)
            if epoch is not None and (not epochs or epochs[-1] != epoch):
                epochs.append(epoch)
            return True

        def under_way() -> bool:
            return sample_epoch() and demo.completed(client) >= KILL_AFTER

        try:
            old = sentinel.master.port
            client = redis.Redis(port=old)
            demo.wait_until(f"{KILL_AFTER} tasks completed", under_way)
            client.close()
            sentinel.master.kill()
            demo.wait_until("a replica promoted", lambda: sentinel.current_master_port() != old, 60)
            # the run goes on against the new master; sample the fencing epoch until it ends
            while demo.proc.poll() is None:
                sample_epoch()
            report = demo.report()
        finally:
            demo.kill()
    print(_measures(report), "epochs seen:", epochs)
    assert report["returncode"] == 0, report
    assert report["verified"] and report["tasks_lost"] == 0, report
    assert report["duplicate_completions"] == 0
    assert all(code == 0 for code in report["exit_codes"].values()), report["exit_codes"]
    # the epoch seen on whichever server was master never went back: the promoted replica had
    # every election the old master acknowledged
    assert epochs and epochs == sorted(epochs), epochs
    assert report["failovers"] >= 0


def test_cluster_master_killed_mid_demo(tmp_path: Path) -> None:
    with RedisClusterGroup(masters=3, replicas=1) as cluster:
        demo = DemoProcess(
            cluster.url, stdlib_corpus(tmp_path / "corpus"), "cfail", "--timeout-s", "240"
        )
        client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        try:
            # the master of the coordination slot: the one whose loss matters
            owner = client.get_node_from_key(demo.keys.tasks)  # type: ignore[no-untyped-call]
            assert owner is not None and owner.port in cluster.master_ports()
            demo.wait_until(
                f"{KILL_AFTER} tasks completed", lambda: demo.completed(client) >= KILL_AFTER
            )
            client.close()
            victim = next(n for n in cluster.nodes if n.port == owner.port)
            victim.kill()
            demo.wait_until("a replica promoted", lambda: len(cluster.master_ports()) == 3, 60)
            report = demo.report()
        finally:
            demo.kill()
            client.close()
    print(_measures(report))
    assert report["returncode"] == 0, report
    assert report["verified"] and report["tasks_lost"] == 0, report
    assert report["duplicate_completions"] == 0
