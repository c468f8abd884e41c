"""`--redis-url`, `--namespace` and `--json` work before and after the subcommand, from one
definition, against a private redis-server (through click's runner and the installed script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
from click.testing import CliRunner

from multiswarm.cli import cli
from multiswarm.cli_common import global_options
from multiswarm.redis_server import RedisServer, environment_without_redis


def _ids(output: str) -> list[str]:
    return [t["id"] for t in json.loads(output)]


def test_global_options_before_and_after_the_subcommand(
    redis_server: RedisServer, namespace: str
) -> None:
    runner = CliRunner()
    url = redis_server.url
    submitted = runner.invoke(
        cli, ["tasks", "submit", "multiswarm.demo_tasks:noop", "--redis-url", url,
              "--namespace", namespace, "--id", "g1", "--json"],
    )  # fmt: skip
    assert submitted.exit_code == 0, submitted.output
    assert json.loads(submitted.output) == {"id": "g1", "status": "ready"}
    forms = [
        ["--redis-url", url, "--namespace", namespace, "tasks", "list", "--json"],
        ["tasks", "list", "--redis-url", url, "--json", f"--namespace={namespace}"],
        ["--json", "--namespace", namespace, "tasks", "--redis-url", url, "list"],
        # given twice, the one nearest the command wins
        ["--namespace", "elsewhere", "tasks", "list", "--namespace", namespace,
         "--redis-url", url, "--json"],
    ]  # fmt: skip
    for args in forms:
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        assert _ids(result.output) == ["g1"], args
    text = runner.invoke(cli, ["tasks", "list", "--redis-url", url, "--namespace", namespace])
    assert text.exit_code == 0 and "g1" in text.output and not text.output.startswith("[")


def test_the_installed_script_takes_them_on_either_side(
    redis_server: RedisServer, namespace: str
) -> None:
    """`multiswarm-cli tasks list --redis-url X --json` and `multiswarm-cli --redis-url X tasks
    list --json`, as separate processes running this tree's CLI."""
    env = {**environment_without_redis(), "MULTISWARM_NAMESPACE": namespace,
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    cli_ = [sys.executable, "-m", "multiswarm"]
    url = redis_server.url

    def run(*args: str) -> list[str]:
        out = subprocess.run([*cli_, *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (args, out.stderr)
        return _ids(out.stdout)

    subprocess.run(
        [*cli_, "tasks", "submit", "m.mod:f", "--id", "p1", "--redis-url", url],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert run("tasks", "list", "--redis-url", url, "--json") == ["p1"]
    assert run("--redis-url", url, "tasks", "list", "--json") == ["p1"]


def test_every_command_accepts_them_from_one_definition() -> None:
    names = {o.name for o in global_options()}
    assert names == {"redis_url", "namespace", "json", "log_format"}

    def walk(command: click.Command, path: str) -> list[str]:
        missing = [path] if not names <= {p.name for p in command.params} else []
        for name, sub in getattr(command, "commands", {}).items():
            missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(cli, "multiswarm-cli") == []


def test_bad_input_is_one_line_exit_2_and_runtime_errors_exit_1(
    redis_server: RedisServer, namespace: str
) -> None:
    base = ["--redis-url", redis_server.url, "--namespace", namespace]
    runner = CliRunner()
    bad = runner.invoke(cli, [*base, "tasks", "submit", "no-colon"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output
    missing = runner.invoke(cli, [*base, "tasks", "show", "ghost"])
    [line] = missing.output.strip().splitlines()
    assert missing.exit_code == 1 and line == "Error: not found: task ghost"
    unreachable = runner.invoke(cli, ["tasks", "list", "--redis-url", "redis://127.0.0.1:1/0"])
    [line] = unreachable.output.strip().splitlines()
    assert unreachable.exit_code == 1 and "Redis at redis://127.0.0.1:1/0 unreachable" in line
    # a URL the server refuses is bad input: exit 2, one line saying what to change
    wrong_db = runner.invoke(cli, ["status", "--redis-url", redis_server.url[:-1] + "99"])
    [line] = wrong_db.output.strip().splitlines()
    assert wrong_db.exit_code == 2 and "no such database" in line
