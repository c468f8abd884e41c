"""`--redis-url` and `--namespace` work before and after the subcommand, one definition."""

from __future__ import annotations

import json

from click.testing import CliRunner

from multiswarm.cli import cli, hoist_global_options
from multiswarm.redis_server import RedisServer


def test_hoisting_keeps_everything_else_in_order() -> None:
    args = ["tasks", "list", "--redis-url", "redis://h/0", "--json", "--namespace=n"]
    assert hoist_global_options(args) == [
        "--redis-url", "redis://h/0", "--namespace=n", "tasks", "list", "--json",
    ]  # fmt: skip
    assert hoist_global_options(["x", "--", "--namespace", "v"]) == ["x", "--", "--namespace", "v"]


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
    before = runner.invoke(
        cli, ["--redis-url", url, "--namespace", namespace, "tasks", "list", "--json"]
    )
    after = runner.invoke(
        cli, ["tasks", "list", "--redis-url", url, "--json", f"--namespace={namespace}"]
    )
    assert before.exit_code == after.exit_code == 0, (before.output, after.output)
    ids = [t["id"] for t in json.loads(after.output)]
    assert ids == ["g1"]
    assert [t["id"] for t in json.loads(before.output)] == ids
