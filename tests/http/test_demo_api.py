"""``demo --api-port`` runs the operations API beside the demo's roles and stops it with them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from multiswarm.redis_server import RedisServer, environment_without_redis, free_port

pytestmark = pytest.mark.slow


def test_demo_with_api_port_runs_and_stops_the_api(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib / "json", corpus / "json", ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "multiswarm",
            "--redis-url",
            redis_server.url,
            "demo",
            "--corpus",
            str(corpus),
            "--api-port",
            str(port),
            "--keep-logs",  # the API's log is read below
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment_without_redis(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["verified"] and report["exit_codes"]["api"] == 0, report
    assert f"dashboard and API: http://127.0.0.1:{port}/" in done.stderr
    log = (Path(report["logs"]) / "api.log").read_text()
    shutil.rmtree(report["logs"])
    assert f"multiswarm api: http://127.0.0.1:{port}/" in log, log
