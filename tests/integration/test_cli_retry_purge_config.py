"""`tasks retry`, `tasks purge` and `config show|set` through the CLI, and a role process that
refuses to start on a timing that conflicts with the deployment's (issue 14, items 6 and 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from multiswarm.cli import cli
from multiswarm.config import Settings
from multiswarm.tasks import TaskStore, task_spec
from tests.integration.helpers import eventually


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, [*args, "--redis-url", settings.redis_url, "--namespace", settings.namespace]
    )
    return result.exit_code, result.output


async def test_retry_and_purge_commands(settings: Settings, flaky: tuple[TaskStore, Path]) -> None:
    store, flag = flaky
    spec = task_spec(
        "tests.handlers:fail_while_file_exists", id="t", capabilities=["x"], max_attempts=1
    )
    await store.submit([(spec, {"flag": str(flag)})])

    async def status(wanted: str) -> bool:
        return bool((await store.get("t")).status == wanted)

    await eventually(lambda: status("dead"), timeout_s=30, what="t dead")
    flag.unlink()
    code, out = await _run(settings, "tasks", "retry", "--status", "dead", "--all", "--json")
    assert code == 0 and json.loads(out) == {"t": "retried"}, out
    await eventually(lambda: status("completed"), timeout_s=30, what="t completed")
    code, out = await _run(settings, "tasks", "purge", "--status", "completed")
    assert (code, out.strip()) == (0, "1 completed tasks purged")
    assert await store.get_many(["t"]) == [None]
    # usage errors: one line, exit 2
    code, out = await _run(settings, "tasks", "retry")
    assert code == 2 and "name task ids, or --status" in out
    code, out = await _run(settings, "tasks", "purge", "--status", "running")
    assert code == 2
    code, out = await _run(settings, "tasks", "purge", "--status", "dead", "--older-than", "inf")
    assert code == 2 and "Traceback" not in out, out
    # a task id that is not there: said, and exit 1 (scripts can tell it did not happen)
    code, out = await _run(settings, "tasks", "retry", "nope")
    assert code == 1 and "nope" in out, out


async def _run(settings: Settings, *args: str) -> tuple[int, str]:
    import asyncio

    return await asyncio.to_thread(_cli, settings, *args)


def test_config_show_set_and_a_conflicting_process_refused(settings: Settings) -> None:
    code, out = _cli(settings, "config", "show")
    assert (code, out.strip()) == (
        0,
        "no timings stored yet: the first process to start stores its own",
    )
    code, out = _cli(settings, "config", "set", "heartbeat_timeout_ms=3000", "--json")
    assert code == 0 and json.loads(out)["heartbeat_timeout_ms"] == 3000
    code, out = _cli(settings, "config", "show", "--json")
    assert json.loads(out)["heartbeat_timeout_ms"] == 3000 and json.loads(out)["lease_ms"] == 30000
    code, out = _cli(settings, "config", "set", "lease=5")
    assert code == 2 and "not a deployment timing: lease" in out
    # past any sane timing (one past 2^63 broke every election), or not ASCII digits: refused,
    # one line, exit 2, nothing stored (found in review)
    for bad in ("lease_ms=99999999999999999999", "lease_ms=\u00b2"):
        code, out = _cli(settings, "config", "set", bad)
        assert code == 2 and len(out.strip().splitlines()) == 1 and "Traceback" not in out, out
    code, out = _cli(settings, "config", "show", "--json")
    assert json.loads(out)["lease_ms"] == 30000
    # a partition count past the most: every process started later would refuse to start
    code, out = _cli(settings, "config", "set", "partitions=300")
    assert code == 2 and "partitions must be from 1 to 256" in out, out
    # a registry started with another heartbeat says so and exits 1, naming both values
    env = {
        **os.environ,
        "MULTISWARM_REDIS_URL": settings.redis_url,
        "MULTISWARM_NAMESPACE": settings.namespace,
        "HEARTBEAT_INTERVAL": "30000",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "multiswarm", "run", "registry"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "HEARTBEAT_INTERVAL=30000 (deployment: 3000)" in last and "Traceback" not in proc.stderr
