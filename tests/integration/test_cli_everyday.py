"""Issue 14, items 8, 9 and 12 through the CLI against a private Redis: what runs where (live),
task times, unique id prefixes, wide tables when piped, swarms complete|fail|delete and the
paused state, and the input checks of ``tasks submit`` and ``scale``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from multiswarm import Multiswarm
from multiswarm.cli import cli
from multiswarm.config import Settings
from multiswarm.errors import IllegalTransition, NotFound
from multiswarm.keys import Keys
from multiswarm.registry import SwarmRegistry
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import host, leader

NOOP = "multiswarm.demo_tasks:noop"


def _invoke(settings: Settings, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["--redis-url", settings.redis_url, "--namespace", settings.namespace, *args],
        input=stdin,
        catch_exceptions=False,
    )
    return result.exit_code, result.output


async def _run(settings: Settings, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """The CLI runs its own event loop (asyncio.run): call it from a thread in async tests."""
    return await asyncio.to_thread(_invoke, settings, *args, stdin=stdin)


async def _json(settings: Settings, *args: str) -> Any:
    code, out = await _run(settings, *args, "--json")
    assert code == 0, out
    return json.loads(out)


def _one_line_error(out: str) -> str:
    """The message of a one-line error without traceback (the test fails otherwise)."""
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    assert "Traceback" not in out
    return lines[0]


async def _running_task(scripts: Scripts, keys: Keys, task_id: str, agent: str = "") -> None:
    """``task_id`` running on worker w1 in swarm s (whose only agent is w1-a1)."""
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("s", ["parse"]))
    report = {
        "running": 0,  # the heartbeat's count is stale on purpose: the task records say 1
        "agent_states": {
            "w1-a1": {"swarm": "s", "kind": "python", "state": "idle", "health": 0},
        },
    }
    await SwarmRegistry(scripts, keys).heartbeat("w1", report, 0.0)
    await store.submit([(task_spec(NOOP, id=task_id, capabilities=["parse"]), 1)])
    await (await leader(scripts, keys)).dispatch_once()
    assert [c.id for c in await store.claim("s", "w1", 1)] == [task_id]


# -- item 8: what runs where -------------------------------------------------------------------
async def test_status_and_agents_show_live_tasks_not_the_last_heartbeat(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    await _running_task(scripts, keys, "job-1")
    report = await _json(settings, "status")
    assert isinstance(report, dict)
    (worker,) = report["workers"]
    assert worker["running"] == 1 and worker["tasks"] == ["job-1"]
    (agent,) = await _json(settings, "agents", "list")
    assert agent["agent"] == "w1-a1" and agent["tasks"] == ["job-1"]
    assert agent["state"] == "busy"  # its worker last reported it idle
    code, out = await _run(settings, "agents", "list")
    assert code == 0 and "job-1" in out and "busy" in out


async def test_tasks_list_and_show_times(settings: Settings, scripts: Scripts, keys: Keys) -> None:
    await _running_task(scripts, keys, "job-1")
    (row,) = await _json(settings, "tasks", "list")
    assert row["created_ms"] > 0 and row["started_ms"] >= row["created_ms"]
    assert row["finished_ms"] == 0 and row["worker"] == "w1" and "agent" in row
    assert row["age_ms"] >= 0 and row["run_ms"] >= 0
    shown = await _json(settings, "tasks", "show", "job-1")
    assert isinstance(shown, dict) and shown["started_ms"] == row["started_ms"]
    code, out = await _run(settings, "tasks", "list")
    assert code == 0
    header = out.splitlines()[1]
    for column in ("age", "run time", "worker", "agent", "lease left"):
        assert column in header


async def test_tables_are_not_cut_when_piped(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    long_id = "t" * 100  # wider than 80 columns on its own
    await TaskStore(scripts, keys).submit([(task_spec(NOOP, id=long_id), 1)])
    code, out = await _run(settings, "tasks", "list")
    assert code == 0 and long_id in out  # CliRunner's stdout is not a terminal


async def test_unique_prefixes_are_accepted_and_ambiguous_ones_listed(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    store = TaskStore(scripts, keys)
    await store.submit([(task_spec(NOOP, id=i), 1) for i in ("abc123", "abd456", "abd789")])
    shown = await _json(settings, "tasks", "show", "abc")
    assert isinstance(shown, dict) and shown["id"] == "abc123"
    assert await _json(settings, "tasks", "cancel", "abc") == {
        "id": "abc123",
        "outcome": "cancelled",
    }
    code, out = await _run(settings, "tasks", "show", "abd")
    assert code == 2
    assert _one_line_error(out) == (
        "Error: task id prefix 'abd' is ambiguous: abd456, abd789; give more of it"
    )
    code, out = await _run(settings, "tasks", "show", "zzz")
    assert (code, _one_line_error(out)) == (1, "Error: not found: task zzz")
    # an exact id wins over longer ids it prefixes
    await store.submit([(task_spec(NOOP, id="abd"), 1)])
    assert (await _json(settings, "tasks", "show", "abd"))["id"] == "abd"
    # swarms: prefixes where the command can be undone
    await host(scripts, keys, "w1", ("parsers", []), ("packers", []))
    assert (await _json(settings, "swarms", "show", "par"))["id"] == "parsers"
    assert await _json(settings, "pause", "pac") == {
        "swarm": "packers",
        "paused": True,
        "changed": True,
    }
    code, out = await _run(settings, "pause", "pa")
    assert code == 2 and "ambiguous: packers, parsers" in _one_line_error(out)


async def test_dependency_given_by_prefix(settings: Settings, scripts: Scripts, keys: Keys) -> None:
    await TaskStore(scripts, keys).submit([(task_spec(NOOP, id="first-task"), 1)])
    receipt = await _json(settings, "tasks", "submit", NOOP, "--id", "second", "--after", "first")
    assert receipt == {"id": "second", "status": "pending"}
    shown = await _json(settings, "tasks", "show", "second")
    assert isinstance(shown, dict) and shown["depends_on"] == ["first-task"]


async def test_bad_submissions_are_usage_errors(settings: Settings) -> None:
    """An unknown dependency (HTTP says 400) exited 1, and a payload integer over 64 bits (no
    MessagePack value) printed a traceback (found in review): both are bad input, exit 2."""
    for args in (("--after", "zzz-no-such-task"), ("--payload", "1" + "0" * 30)):
        code, out = await _run(settings, "tasks", "submit", NOOP, *args)
        assert code == 2, out
        _one_line_error(out)


# -- item 9: swarm states and their end --------------------------------------------------------
async def test_paused_swarm_never_reads_plain_active(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    await host(scripts, keys, "w1", ("s", []))
    await SwarmRegistry(scripts, keys).set_paused("s", True)
    for args in (("status",), ("swarms", "list")):
        code, out = await _run(settings, *args)
        assert code == 0 and "active (paused)" in out
    (row,) = await _json(settings, "swarms", "list")
    assert row["status"] == "active" and row["paused"] is True
    report = await _json(settings, "status")
    assert isinstance(report, dict) and report["swarms"][0]["paused"] is True


async def test_swarms_complete_fail_delete(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    await host(scripts, keys, "w1", ("done", []), ("broken", []))
    assert await _json(settings, "swarms", "complete", "done") == {
        "swarm": "done",
        "status": "completed",
        "before": "active",
        "changed": True,
    }
    code, out = await _run(settings, "swarms", "complete", "done")
    assert code == 0 and out.strip() == "done was already completed"
    code, out = await _run(settings, "swarms", "fail", "done")
    assert code == 1
    assert _one_line_error(out) == "Error: illegal transition: done completed -> failed"
    # not finished yet: refused, nothing changed
    code, out = await _run(settings, "swarms", "delete", "broken")
    assert code == 1 and "only completed, failed or interrupted" in _one_line_error(out)
    code, out = await _run(settings, "swarms", "fail", "broken")
    assert code == 0 and out.strip() == "broken failed"
    for sid, before in (("done", "completed"), ("broken", "failed")):
        assert (await _json(settings, "swarms", "delete", sid))["before"] == before
    assert await _json(settings, "swarms", "list") == []
    code, out = await _run(settings, "swarms", "delete", "done")
    assert (code, _one_line_error(out)) == (1, "Error: not found: swarm done")
    code, out = await _run(settings, "swarms", "show", "done")
    assert (code, _one_line_error(out)) == (1, "Error: not found: swarm done")


async def test_facade_delete_refuses_a_swarm_with_queued_tasks(
    settings: Settings, scripts: Scripts, keys: Keys
) -> None:
    await host(scripts, keys, "w1", ("s", []))
    await TaskStore(scripts, keys).submit([(task_spec(NOOP, id="t1"), 1)])
    await (await leader(scripts, keys)).dispatch_once()
    async with await Multiswarm.connect(settings=settings) as ms:
        # interrupted with its queue kept (the bare transition script; reaping a dead host
        # would hand the queued task back): delete must not strand it
        await ms.registry.transition("s", "interrupted")
        assert await scripts.client.zcard(keys.queue("s")) == 1
        with pytest.raises(IllegalTransition, match="queued"):
            await ms.delete_swarm("s")
        assert (await ms.get_swarm("s")).status == "interrupted"
        # once the task moved on (cancelled: its slot freed; its queue entry, which the next
        # claim would drop, dropped by hand) the swarm can go
        await TaskStore(scripts, keys).cancel("t1")
        await scripts.client.delete(keys.queue("s"))
        assert await ms.delete_swarm("s") == "interrupted"
        with pytest.raises(NotFound):
            await ms.get_swarm("s")
        assert "s" not in await ms.registry.swarm_ids()


# -- item 12: input ----------------------------------------------------------------------------
async def test_submit_timing_options(settings: Settings, scripts: Scripts, keys: Keys) -> None:
    args = ["--lease-ms", "5000", "--timeout-ms", "7000", "--backoff-ms", "0"]
    args += ["--backoff-max-ms", "9000", "--result-ttl-ms", "60000", "--max-attempts", "5"]
    await _json(settings, "tasks", "submit", NOOP, "--id", "t1", *args)
    t = await TaskStore(scripts, keys).get("t1")
    assert (t.lease_ms, t.timeout_ms, t.backoff_ms, t.backoff_max_ms) == (5000, 7000, 0, 9000)
    assert (t.result_ttl_ms, t.max_attempts) == (60000, 5)
    code, out = await _run(settings, "tasks", "submit", NOOP, "--lease-ms", "10")
    assert code == 2 and "lease_ms=10 is below the minimum" in _one_line_error(out)


async def test_payload_from_file_and_stdin(
    settings: Settings, scripts: Scripts, keys: Keys, tmp_path: Path
) -> None:
    doc = tmp_path / "p.json"
    doc.write_text('{"path": "a.py", "n": [1, 2]}')
    await _json(settings, "tasks", "submit", NOOP, "--id", "f", "--payload", f"@{doc}")
    code, out = await _run(
        settings, "tasks", "submit", NOOP, "--id", "s", "--payload", "-", stdin='{"x": 1}'
    )
    assert code == 0, out
    store = TaskStore(scripts, keys)
    payloads = await scripts.client.hmget(keys.payloads, ["f", "s"])
    from multiswarm.messages import unpack

    assert [unpack(p) for p in payloads if isinstance(p, bytes)] == [
        {"path": "a.py", "n": [1, 2]},
        {"x": 1},
    ]
    assert (await store.get("s")).status == "ready"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("{bad", "Error: --payload is not JSON: "),
        ("@/nonexistent/p.json", "Error: --payload: cannot read /nonexistent/p.json: "),
    ],
)
def test_bad_payloads_name_the_option(settings: Settings, payload: str, expected: str) -> None:
    code, out = _invoke(settings, "tasks", "submit", NOOP, "--payload", payload)
    assert code == 2 and _one_line_error(out).startswith(expected)


def test_oversized_payload_states_the_limit(settings: Settings) -> None:
    big = json.dumps("x" * (1024 * 1024 + 1))
    code, out = _invoke(settings, "tasks", "submit", NOOP, "--payload", "-", stdin=big)
    assert code == 2
    assert "above the limit of 1048576 (1 MiB)" in _one_line_error(out)


def test_scale_blames_the_right_argument(settings: Settings) -> None:
    code, out = _invoke(settings, "scale", "a b", "3")
    assert code == 2 and "invalid swarm id 'a b'" in _one_line_error(out)
    for bad in ("-3", "0", "1001"):
        code, out = _invoke(settings, "scale", "mine", bad)
        assert code == 2
        assert _one_line_error(out) == (
            f"Error: TARGET must be >= 1 and <= 1000 (members per worker), not {bad}"
        )


@pytest.mark.parametrize(
    "args",
    [
        ["run", "worker", "--swarm", "s", "--grace-s", "-1"],
        ["demo", "--timeout-s", "-5"],
        ["demo", "--timeout-s", "0"],
        ["messages", "tail", "--timeout-s", "-1"],
        ["messages", "send", "s", "--timeout-s", "-1"],
    ],
)
def test_negative_durations_are_refused(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "-s'" in result.output and "is not in the range" in result.output


# -- item 7, the CLI part: --log-format --------------------------------------------------------
def test_children_inherit_the_log_format(settings: Settings, tmp_path: Path) -> None:
    """A role started by ``up``/``demo`` (ProcessGroup) logs JSON lines when the parent's
    settings say json."""
    from multiswarm.launcher import ProcessGroup

    from .helpers import wait_sync

    group = ProcessGroup(settings.replace(log_format="json"), log_dir=tmp_path, verbose=True)
    child = group.spawn("worker", ["worker", "--swarm", "s::1"])  # logs what it hosts
    try:
        assert child.log is not None
        log = child.log
        wait_sync(lambda: log.read_text().count("\n") >= 1, what="a log line")
    finally:
        group.stop_all()
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]  # every line is JSON
    assert all({"ts", "level", "logger", "message", "pid"} <= d.keys() for d in docs)
    assert docs[0]["pid"] == child.pid


def test_log_format_option_and_variable(settings: Settings) -> None:
    code, out = _invoke(settings, "status", "--log-format", "yaml")
    assert code == 2 and "'yaml' is not one of 'text', 'json'" in out
    result = CliRunner().invoke(cli, ["status"], env={"MULTISWARM_LOG_FORMAT": "yaml"})
    assert result.exit_code == 2
    assert _one_line_error(result.output) == (
        "Error: MULTISWARM_LOG_FORMAT: log format 'yaml' is not one of text, json"
    )
