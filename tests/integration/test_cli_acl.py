"""The CLI's reads as the least-privilege ACL user of ``deploy/acl.conf`` (session 21's CLI
review, finding 7): every read command works, task-id prefixes included, and the server's
``ACL LOG`` shows nothing refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from multiswarm.cli import cli
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts

from .test_security_tls_acl import PASSWORD, USER, acl_file, refusals

NAMESPACE = "aclcli"


@pytest.fixture
def acl_url(tmp_path: Path) -> Iterator[tuple[RedisServer, str]]:
    with RedisServer(aclfile=acl_file(tmp_path, NAMESPACE)) as server:
        yield server, server.url_for(USER, PASSWORD)


def _invoke(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["--redis-url", url, "--namespace", NAMESPACE, *args], catch_exceptions=False
    )
    return result.exit_code, result.output


async def _swarm(url: str) -> None:
    client = connect(Settings(redis_url=url, namespace=NAMESPACE))
    try:
        registry = SwarmRegistry(Scripts(client), Keys(NAMESPACE))
        await registry.register_swarm(swarm_spec("parsers", ["parse"]))
    finally:
        await client.aclose()


def test_cli_reads_work_as_the_acl_user(acl_url: tuple[RedisServer, str]) -> None:
    """`tasks show <prefix>` (and cancel, retry by prefix) died with NOPERM on HSCAN before:
    the file lacked the command."""
    server, url = acl_url
    asyncio.run(_swarm(url))
    submit = ["tasks", "submit", "multiswarm.demo_tasks:noop", "--id", "task-abc", "--cap", "x"]
    assert _invoke(url, *submit)[0] == 0
    reads = [
        ["status"],
        ["leader"],
        ["agents", "list"],
        ["agents", "list", "--swarm", "pars"],
        ["swarms", "list"],
        ["swarms", "show", "pars"],
        ["tasks", "list"],
        ["tasks", "list", "--status", "ready"],
        ["tasks", "show", "task-abc"],
        ["tasks", "show", "task-a"],  # a prefix: HSCAN
        ["breakers", "list"],
        ["votes", "list"],
        ["config", "show"],
        ["recover", "list"],
        ["recover", "plan", "parsers"],
        ["recover", "log", "parsers"],
        ["recover", "quarantine", "parsers"],
        ["snapshot", "list", "parsers"],
        ["checkpoint", "list", "parsers"],
        ["messages", "dead-letters"],
        ["messages", "tail", "events", "--since", "0", "--timeout-s", "0.3"],
    ]
    for args in reads:
        for json_flag in ((), ("--json",)):
            code, out = _invoke(url, *args, *json_flag)
            assert code == 0, (args, out)
    code, out = _invoke(url, "tasks", "cancel", "task-a")
    assert code == 0 and out.strip() == "task-abc cancelled", out
    assert refusals(server) == []
