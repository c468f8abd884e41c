"""Operator commands through click's CliRunner against a private Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from multiswarm.cli import cli
from multiswarm.config import Settings
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts

from .helpers import host, leader


def _invoke(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["--redis-url", settings.redis_url, "--namespace", settings.namespace, *args],
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def _json_sync(settings: Settings, *args: str) -> object:
    code, out = _invoke(settings, *args, "--json")
    assert code == 0, out
    return json.loads(out)


async def _json(settings: Settings, *args: str) -> object:
    """The CLI runs its own event loop (asyncio.run): call it from a thread in async tests."""
    return await asyncio.to_thread(_json_sync, settings, *args)


async def test_leader_json(settings: Settings, scripts: Scripts, keys: Keys) -> None:
    assert await _json(settings, "leader") == {
        "holder": None,
        "host": None,
        "pid": None,
        "epoch": None,
        "lease_ms_left": 0,
    }
    coord = await leader(scripts, keys)
    report = await _json(settings, "leader")
    assert isinstance(report, dict)
    assert report["holder"] == coord.election.holder_id and report["epoch"] == 1
    assert 0 < report["lease_ms_left"] <= 30_000 and report["pid"] > 0 and report["host"]
    code, out = await asyncio.to_thread(_invoke, settings, "leader")
    assert code == 0 and "epoch 1" in out


async def test_tasks_submit_show_list_cancel(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    await host(scripts, keys, "w1", ("s", ["parse"]))
    sub = await _json(
        settings,
        "tasks",
        "submit",
        "multiswarm.demo_tasks:noop",
        "--id",
        "a",
        "--cap",
        "parse",
        "--payload",
        '{"x": 1}',
    )
    assert sub == {"id": "a", "status": "ready"}
    assert await _json(
        settings, "tasks", "submit", "multiswarm.demo_tasks:noop", "--id", "b", "--after", "a"
    ) == {"id": "b", "status": "pending"}
    coord = await leader(scripts, keys)
    await coord.dispatch_once()
    from multiswarm.tasks import TaskStore

    store = TaskStore(scripts, keys)
    await store.claim("s", "w1", 1)

    rows = await _json(settings, "tasks", "list", "--status", "running")
    assert isinstance(rows, list) and [r["id"] for r in rows] == ["a"]
    assert rows[0]["worker"] == "w1" and rows[0]["swarm"] == "s"
    assert 0 < rows[0]["lease_ms_left"] <= 30_000
    shown = await _json(settings, "tasks", "show", "b")
    assert isinstance(shown, dict) and shown["waiting_on"] == 1 and shown["depends_on"] == ["a"]
    assert await _json(settings, "tasks", "cancel", "a") == {"id": "a", "outcome": "cancelled"}
    assert (await _json(settings, "tasks", "show", "b"))["reason"] == "dependency a cancelled"  # type: ignore[index]
    code, out = await asyncio.to_thread(_invoke, settings, "tasks", "list")
    assert code == 0 and "cancelled" in out


async def test_status_json_and_table(settings: Settings, scripts: Scripts, keys: Keys) -> None:
    await host(scripts, keys, "w1", ("s", ["parse"]))
    report = await _json(settings, "status")
    assert isinstance(report, dict)
    assert [s["id"] for s in report["swarms"]] == ["s"]
    assert report["swarms"][0]["status"] == "active" and report["workers"][0]["id"] == "w1"
    assert set(report["tasks"]) >= {"ready", "running", "completed", "dead"}
    code, out = await asyncio.to_thread(_invoke, settings, "status")
    assert code == 0 and "active" in out


def test_errors_are_messages_not_tracebacks(settings: Settings) -> None:
    code, out = _invoke(settings, "tasks", "show", "ghost")
    # one line naming what was wrong, no class names, no doubled code (issue 14, item 13)
    assert (code, out.strip()) == (1, "Error: not found: task ghost")
    code, out = _invoke(settings, "tasks", "submit", "no-colon")
    assert code == 2 and "package.module:function" in out
    code, out = _invoke(settings, "tasks", "submit", "m:f", "--after", "ghost")
    assert (
        code == 2 and "unknown dependency" in out and "ghost" in out
    )  # bad input (exit 1 before session 19)
    code, out = _invoke(settings, "tasks", "show", "bad:id")
    assert code == 2 and "invalid task id 'bad:id'" in out  # bad input: always exit 2


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["run", "worker"],
        ["run", "coordinator"],
        ["up"],
        ["demo"],
        ["tasks"],
        ["tasks", "list"],
        ["leader"],
        ["status"],
        ["swarms"],
        ["swarms", "delete"],
        ["agents", "list"],
        ["scale"],
    ],
)
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("module", ["multiswarm", "multiswarm.cli"])
def test_module_entry_points_import_cleanly(module: str) -> None:
    """Role processes start as ``python -m multiswarm``; a circular import between the command
    modules would kill every one of them at start."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", module, "run", "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "--external" in out.stdout
