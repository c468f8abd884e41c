"""A `run worker` process imports only what serving needs (decision 85): no Prometheus client
without ``--metrics-port``, no coordinator module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from multiswarm.worker_metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]

#: The modules `multiswarm-cli run worker` imports before its worker serves.
WORKER_START = (
    "multiswarm.cli",
    "multiswarm.cli_run",
    "multiswarm.node_api",
    "multiswarm.roles",
    "multiswarm.worker_partitions",
)


def test_worker_start_imports_neither_prometheus_nor_coordinator() -> None:
    code = (
        f"import sys, {', '.join(WORKER_START)}\n"
        "from multiswarm.worker_metrics import WorkerMetrics\n"
        "WorkerMetrics(enabled=False)  # what a worker without --metrics-port holds\n"
        "late = [m for m in ('prometheus_client', 'multiswarm.coordinator') if m in sys.modules]\n"
        "assert not late, late\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_disabled_metrics_build_their_histograms_when_read() -> None:
    off = WorkerMetrics(enabled=False)
    off.ran("s", "ok", 0.1)  # a no-op
    assert [m.samples for m in off.run_s.collect()] == [[]]
    on = WorkerMetrics()
    on.ran("s", "ok", 0.1)
    names = {m.name for m in on.registry.collect()}
    assert names == {
        "multiswarm_worker_task_run_seconds",
        "multiswarm_worker_task_queue_wait_seconds",
        "multiswarm_worker_claim_batch_size",
    }
