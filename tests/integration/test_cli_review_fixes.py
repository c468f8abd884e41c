"""Session 21's CLI review, findings 2, 7, 8, 9 and 10, through CliRunner against a private
Redis: user text in tables printed as written, a Redis error reply as one line, strict JSON in
and out, a ``--since`` error that names the option, and outcomes that changed nothing exiting 1.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from multiswarm.config import Settings
from multiswarm.connection import Client
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, invoke_cli, leader

NOOP = "multiswarm.demo_tasks:noop"


_invoke = invoke_cli


async def _run(settings: Settings, *args: str) -> tuple[int, str]:
    """The CLI runs its own event loop (asyncio.run): call it from a thread in async tests."""
    return await asyncio.to_thread(_invoke, settings, *args)


def _one_line_error(out: str) -> str:
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    assert "Traceback" not in out
    return lines[0]


def _strict(text: str) -> Any:
    """``text`` parsed as JSON by a parser that refuses ``NaN`` and ``Infinity``, as those of
    JavaScript, Go or Rust do."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


# -- finding 2: table cells are plain text -------------------------------------------------------
async def test_brackets_in_table_cells_print_as_written(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    """A cancel reason ``x [/x] [parse]`` made `tasks list` die with rich's MarkupError before
    (exit 1, a traceback); the README's ``capabilities [gpu]`` reason lost its ``[gpu]``."""
    code, out = await _run(settings, "tasks", "submit", NOOP, "--id", "t1", "--cap", "parse")
    assert code == 0, out
    code, out = await _run(settings, "tasks", "cancel", "t1", "--reason", "x [/x] [parse]")
    assert code == 0, out
    code, out = await _run(settings, "tasks", "list")
    assert code == 0 and "Traceback" not in out, out
    assert "x [/x] [parse]" in out
    # nothing can run it: the leader's reason names the capability in brackets
    await TaskStore(scripts, keys).submit([(task_spec(NOOP, id="t2", capabilities=["gpu"]), 1)])
    await host(scripts, keys, "w1", ("s", ["parse"]))
    await (await leader(scripts, keys)).dispatch_once()
    code, out = await _run(settings, "tasks", "list", "--status", "ready")
    assert code == 0, out
    reason = (await asyncio.to_thread(_invoke, settings, "tasks", "show", "t2", "--json"))[1]
    assert "[gpu]" in json.loads(reason)["reason"]
    assert "[gpu]" in out


# -- finding 7: an error reply of Redis is one line ----------------------------------------------
async def test_a_redis_error_reply_is_one_line_and_exit_1(
    settings: Settings, client: Client, keys: Keys
) -> None:
    """The task index holding a string (a damaged keyspace): WRONGTYPE reached the user as a
    traceback before."""
    await client.set(keys.tasks, "not a hash")
    code, out = await _run(settings, "tasks", "show", "abc")
    assert code == 1, out
    line = _one_line_error(out)
    assert "WRONGTYPE" in line, line


# -- finding 8: strict JSON in and out -----------------------------------------------------------
async def test_nan_and_infinity_are_refused_in_payloads(settings: Settings) -> None:
    """Accepted before (`tasks submit` exit 0), and printed back as NaN; the HTTP API answers
    400 to the same body."""
    for payload in ('{"v": NaN}', "Infinity", "[-Infinity]", '{"v": 1e999}'):
        code, out = await _run(
            settings, "tasks", "submit", NOOP, "--payload", payload, "--cap", "parse"
        )
        assert code == 2, (payload, out)
        assert "--payload" in _one_line_error(out)
    code, out = await _run(settings, "messages", "send", "s", "--payload", '{"v": NaN}')
    assert code == 2, out
    assert "--payload" in _one_line_error(out)
    code, out = await _run(settings, "tasks", "submit", NOOP, "--payload", '{"v": 1.5e300}')
    assert code == 0, out  # a large finite number is JSON


async def test_a_nan_result_prints_as_strict_json(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    """A handler's float('nan') result: ``"v": NaN`` in `tasks show --json` before."""
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("s", ["parse"]))
    await store.submit([(task_spec(NOOP, id="n1", capabilities=["parse"]), 1)])
    await (await leader(scripts, keys)).dispatch_once()
    (claimed,) = await store.claim("s", "w1", 1)
    result = {"v": float("nan"), "w": [float("inf"), -float("inf"), 1.5]}
    assert await store.complete("n1", claimed.token, "w1", result) == "completed"
    code, out = await _run(settings, "tasks", "show", "n1", "--json")
    assert code == 0, out
    assert _strict(out)["result"] == {"v": None, "w": [None, None, 1.5]}  # as the HTTP API


# -- finding 9: --since ----------------------------------------------------------------------------
def test_messages_tail_since_names_the_option(settings: Settings) -> None:
    """``invalid literal for int() with base 10: 'garbage'`` before. (In the main thread: the
    tail installs its signal handlers.)"""
    for bad in ("garbage", "12-", "-1", "1-2-3", "99999999999999999999999"):
        code, out = _invoke(settings, "messages", "tail", "events", "--since", bad)
        assert code == 2, (bad, out)
        assert "--since" in _one_line_error(out), bad
    for good in ("0", "1700000000000-0", "1700000000000"):
        code, out = _invoke(
            settings, "messages", "tail", "events", "--since", good, "--timeout-s", "0.2"
        )
        assert code == 0, (good, out)


# -- finding 10: outcomes that changed nothing ---------------------------------------------------
async def test_cancelling_an_ended_task_exits_1(settings: Settings) -> None:
    """``s2 ended:cancelled`` and exit 0 before; the HTTP API answers 409."""
    code, out = await _run(settings, "tasks", "submit", NOOP, "--id", "s2", "--cap", "parse")
    assert code == 0, out
    code, out = await _run(settings, "tasks", "cancel", "s2")
    assert code == 0 and out.strip() == "s2 cancelled", out
    for json_flag in ((), ("--json",)):
        code, out = await _run(settings, "tasks", "cancel", "s2", *json_flag)
        assert code == 1, out
        assert _one_line_error(out) == "Error: task s2 had already ended (cancelled); not cancelled"


async def test_agents_of_an_unknown_swarm_is_not_found(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    """An empty table and exit 0 before, where `swarms show zz` says not found."""
    code, out = await _run(settings, "agents", "list", "--swarm", "zz")
    assert code == 1, out
    assert _one_line_error(out) == "Error: not found: swarm zz"
    # a swarm that exists but has no member is an empty list, not an error
    await host(scripts, keys, "w1", ("s", ["parse"]))
    code, out = await _run(settings, "agents", "list", "--swarm", "s", "--json")
    assert code == 0 and json.loads(out) == [], out
