"""The main job end to end, as a newcomer runs it: the CLI, separate processes, faults."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from multiswarm.redis_server import RedisServer, environment_without_redis
from tests.integration.helpers import stdlib_corpus

pytestmark = pytest.mark.slow


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = stdlib_corpus(tmp_path / "corpus")
    (root / "broken.py").write_bytes(b"def f(:\n  '''unterminated\n")  # tokenize error path
    return root


def _demo(
    url: str,
    corpus: Path,
    *extra: str,
    tmpdir: Path | None = None,
    env_extra: dict[str, str] | None = None,
) -> tuple[int, dict]:  # type: ignore[type-arg]
    env = {**environment_without_redis(), **(env_extra or {})}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)  # where the demo makes its log directory
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "multiswarm.cli",
            "--redis-url",
            url,
            "demo",
            "--corpus",
            str(corpus),
            "--group-size",
            "8",
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_demo_survives_leader_and_worker_kills(
    redis_server: RedisServer, corpus: Path, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    code, report = _demo(redis_server.url, corpus, "--kill-leader", "--kill-worker", tmpdir=temp)
    assert code == 0, report
    # a verified run leaves no log directory behind (issue 14, item 14)
    assert report["logs"] is None and not list(temp.glob("multiswarm-demo-*"))
    assert report["verified"] is True and report["result_matches_reference"] is True
    assert report["tasks_submitted"] == report["tasks_completed"] > 2 * report["files"]
    assert report["tasks_lost"] == 0 and report["duplicate_completions"] == 0
    assert report["failovers"] >= 1 and report["failover_seconds"] is not None
    assert report["leader_killed"] and report["worker_killed"]
    assert report["executions"] >= report["tasks_completed"]
    assert report["summary"]["tokenize_errors"] == 1
    assert report["exit_codes"]["worker-0"] == -9
    assert all(
        code == 0
        for name, code in report["exit_codes"].items()
        if name not in (report["leader_killed"]["name"], "worker-0")
    )
    for key in (
        "tasks_submitted",
        "tasks_completed",
        "tasks_lost",
        "duplicate_completions",
        "executions",
        "failovers",
        "failover_seconds",
        "wall_seconds",
        "tasks_per_second",
        "verified",
    ):
        assert key in report


def test_demo_more_swarms_and_workers(redis_server: RedisServer, corpus: Path) -> None:
    code, report = _demo(
        redis_server.url, corpus, "--swarms", "4", "--workers", "3", "--agents", "1", "--keep-logs"
    )
    assert code == 0 and report["verified"], report
    assert (report["swarms"], report["workers"]) == (4, 3)
    # --keep-logs keeps them, and they say what each role did
    logs = Path(report["logs"])
    try:
        assert "coordinator" in (logs / "coordinator-a.log").read_text()
        assert (logs / "worker-2.log").read_text().strip()
    finally:
        shutil.rmtree(logs)


def test_demo_in_three_partitions_survives_leader_and_worker_kills(
    redis_server: RedisServer, corpus: Path
) -> None:
    """Decision 44: one DAG per partition, each partition with its own leader; the merged result
    still equals the single-process one through a leader and a worker killed."""
    code, report = _demo(
        redis_server.url,
        corpus,
        "--swarms",
        "6",
        "--kill-leader",
        "--kill-worker",
        env_extra={"MULTISWARM_PARTITIONS": "3", "MULTISWARM_NAMESPACE": "parts"},
    )
    assert code == 0, report
    assert report["verified"] is True and report["result_matches_reference"] is True
    assert report["tasks_lost"] == 0 and report["duplicate_completions"] == 0
    assert report["partitions"] == 3 and all(report["leaders_at_end"])
    assert report["failovers"] >= 1 and report["leader_killed"] and report["worker_killed"]


def test_demo_refuses_too_few_swarms_for_its_partitions(
    redis_server: RedisServer, corpus: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "multiswarm.cli", "--redis-url", redis_server.url, "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment_without_redis(), "MULTISWARM_PARTITIONS": "3"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "needs at least 6 swarms" in proc.stderr and proc.stderr.count("\n") == 1


def test_demo_starts_a_private_server_when_none_is_configured(corpus: Path) -> None:
    """With nothing configured and nothing on :6379 the demo brings its own server. Where :6379
    answers (a developer machine), the same command uses it instead: both are the documented
    behaviour, and the report says which was used."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "multiswarm.cli",
            "demo",
            "--corpus",
            str(corpus / "json"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment_without_redis(),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verified"] is True
    assert ("started private" in proc.stderr) or ("found running" in proc.stderr)
