"""The worker <-> agent pipe (real processes, no Redis): many runs share pipe messages yet each
reply reaches its own run, every reply kind and size comes back, timeouts stop or kill as the
agent's concurrency allows, and a stop that comes before its run started still stops it."""

from __future__ import annotations

import asyncio
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from multiswarm.agent_pipe import Frames
from multiswarm.agents import INLINE_SEND_BYTES, AgentProcess
from multiswarm.messages import pack, unpack

from .helpers import eventually

pytestmark = pytest.mark.slow

HANDLERS = "tests.integration.agent_handlers:"


async def _run(
    agent: AgentProcess, task_id: str, handler: str, timeout_s: float = 60.0, **payload: Any
) -> tuple[str, Any]:
    return await agent.run(task_id, 1, HANDLERS + handler, pack(payload), {}, timeout_s)


def test_frames_split_what_one_read_holds_and_join_what_several_do() -> None:
    r, w = os.pipe()
    try:
        frames = Frames(r)
        big = pickle.dumps([b"y" * 100_000])
        small = [pickle.dumps([("a", i)]) for i in range(3)]
        # three messages in one write: one read returns all three
        os.write(w, b"".join(len(m).to_bytes(4, "big") + m for m in small))
        assert frames.read() == [("a", 0), ("a", 1), ("a", 2)]
        # a message larger than one read: nothing until its last part has come
        stream = len(big).to_bytes(4, "big") + big
        got: list[Any] = []
        for i in range(0, len(stream), 30_000):
            os.write(w, stream[i : i + 30_000])
            batch = frames.read()
            assert batch is not None
            got.extend(batch)
            assert got == ([] if i + 30_000 < len(stream) else [b"y" * 100_000])
        os.close(w)
        w = -1
        assert frames.read() is None
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@pytest.mark.parametrize("handler", ["echo", "echo_async", "echo_later"])
async def test_many_runs_at_once_each_get_their_own_reply(handler: str) -> None:
    agent = AgentProcess("p.a0", ("tests.",), concurrency=4)
    try:
        replies = await asyncio.gather(*(_run(agent, f"t{i}", handler) for i in range(200)))
        assert [unpack(data)["task"] for _, data in replies] == [f"t{i}" for i in range(200)]
        assert {kind for kind, _ in replies} == {"ok"}
    finally:
        await agent.stop()


@pytest.mark.parametrize("concurrency", [3, 1])
async def test_every_kind_and_size_of_reply_comes_back(concurrency: int) -> None:
    agent = AgentProcess("p.a1", ("tests.",), concurrency=concurrency)
    try:
        pad = 4 * INLINE_SEND_BYTES + 1_000_000  # large replies and inputs go from threads
        big_input = pack({"pad": 10, "blob": b"z" * (2 * INLINE_SEND_BYTES)})
        runs = [
            _run(agent, "small", "echo"),
            _run(agent, "big", "echo", pad=pad),
            _run(agent, "big_async", "echo_async", pad=pad),
            agent.run("big_in", 2, HANDLERS + "echo", big_input, {}, 60.0),
            _run(agent, "bug", "fail"),
            _run(agent, "missing", "nowhere"),
            agent.run("foreign", 1, "elsewhere.mod:fn", pack({}), {}, 60.0),
            agent.run("garbled", 1, HANDLERS + "echo", b"\xc1", {}, 60.0),
        ]
        got = dict(
            zip(
                ["small", "big", "big_async", "big_in", "bug", "missing", "foreign", "garbled"],
                await asyncio.gather(*runs),
            )
        )
        assert got["small"][0] == "ok" and unpack(got["small"][1])["pad"] == ""
        for task in ("big", "big_async"):
            assert got[task][0] == "ok" and len(unpack(got[task][1])["pad"]) == pad
        assert got["big_in"][0] == "ok" and unpack(got["big_in"][1])["attempt"] == 2
        assert got["bug"][0] == "error" and "failing on purpose in bug" in got["bug"][1]
        assert got["missing"][0] == "permanent"
        assert got["foreign"][0] == "refused"
        assert got["garbled"][0] == "permanent"
        assert agent.failures == 1 and agent.alive
    finally:
        await agent.stop()


@pytest.mark.parametrize("concurrency", [2, 1])
async def test_a_timeout_stops_the_handler_and_its_finally_runs(
    tmp_path: Path, concurrency: int
) -> None:
    """At concurrency 1 too (decision 127): the timeout killed that agent at once before, and
    the handler's ``finally`` never ran."""
    agent = AgentProcess("p.a2", ("tests.",), concurrency=concurrency)
    try:
        pid, d = agent.pid, str(tmp_path)
        # the agent up first: a start slower than the timeout (a loaded machine) would stop the
        # run before its handler began, and nothing would unwind
        assert (await _run(agent, "warm", "echo"))[0] == "ok"
        kind, why = await _run(agent, "slow", "spin", timeout_s=0.5, dir=d, seconds=60)
        assert (kind, why) == ("error", "timed out after 0.5 s (stopped)")
        assert (tmp_path / "slow.unwound").exists()
        assert agent.alive and agent.pid == pid and agent.consecutive_failures == 1
        assert (await _run(agent, "next", "echo"))[0] == "ok"
        assert agent.consecutive_failures == 0
    finally:
        await agent.stop()


async def test_a_stopped_handler_s_finally_is_not_cut_short_by_the_stop_s_resends(
    tmp_path: Path,
) -> None:
    """At concurrency 1 the stop signal is sent again every 0.2 s until the agent replies;
    each one raised TaskStopped again, inside the handler's own ``finally`` (found in session
    21's review). Now it is raised once a run."""
    agent = AgentProcess("p.a5", ("tests.",), concurrency=1)
    try:
        d = str(tmp_path)
        assert (await _run(agent, "warm", "echo"))[0] == "ok"
        kind, why = await _run(
            agent, "slow", "slow_finally", timeout_s=0.5, dir=d, seconds=60, cleanup_s=0.8
        )
        assert (kind, why) == ("error", "timed out after 0.5 s (stopped)")
        assert (tmp_path / "slow.cleaned").exists()
        assert agent.alive
    finally:
        await agent.stop()


async def test_a_stopped_handler_s_sweep_spares_an_earlier_run_s_helper(tmp_path: Path) -> None:
    """After a stopped run, an agent of concurrency 1 kills what the run left in its process
    group (decision 127), but not a helper an earlier run started and keeps (found in session
    21's review: the next tasks using it failed)."""
    agent = AgentProcess("p.a6", ("tests.",), concurrency=1)
    try:
        kind, data = await _run(agent, "keeper", "keep_helper")
        assert kind == "ok"
        helper = unpack(data)
        kind, _ = await _run(agent, "slow", "spin", timeout_s=0.5, dir=str(tmp_path), seconds=60)
        assert kind == "error" and agent.alive
        # still running: not gone, nor a zombie its agent has not reaped yet
        stat = await asyncio.to_thread(Path(f"/proc/{helper}/stat").read_text)
        assert stat[stat.rindex(")") + 2] != "Z", stat
    finally:
        await agent.stop()


async def test_a_timeout_kills_an_agent_of_concurrency_one_deaf_to_its_stop(
    tmp_path: Path,
) -> None:
    agent = AgentProcess("p.a3", ("tests.",), concurrency=1)
    try:
        kind, why = await _run(agent, "slow", "block", timeout_s=0.5, dir=str(tmp_path), seconds=60)
        assert kind == "error" and why.startswith("timed out after 0.5 s (agent p.a3 killed")
        assert not agent.alive
        assert (await _run(agent, "after", "echo"))[0] == "error"  # not running until restarted
        await agent.restart()
        assert (await _run(agent, "after", "echo"))[0] == "ok"
    finally:
        await agent.stop()


async def test_a_run_stopped_before_it_started_never_starts(tmp_path: Path) -> None:
    agent = AgentProcess("p.a4", ("tests.",), concurrency=2)
    try:
        d = str(tmp_path)
        busy = [
            asyncio.create_task(_run(agent, f"busy{i}", "spin", dir=d, seconds=1.5))
            for i in range(2)
        ]

        async def both_started() -> bool:
            return all((tmp_path / f"busy{i}.started").exists() for i in range(2))

        await eventually(both_started, timeout_s=30, what="both busy")
        queued = asyncio.create_task(_run(agent, "queued", "spin", dir=d, seconds=60))
        await asyncio.sleep(0.2)  # in the agent's pool queue, behind the two busy ones
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert [kind for kind, _ in await asyncio.gather(*busy)] == ["ok", "ok"]
        assert not (tmp_path / "queued.started").exists()
        assert agent.alive
    finally:
        await agent.stop()


async def test_stopping_an_agent_lets_its_running_tasks_finish(tmp_path: Path) -> None:
    agent = AgentProcess("p.a5", ("tests.",), concurrency=2)
    d = str(tmp_path)
    runs = [
        asyncio.create_task(_run(agent, "sync", "spin", dir=d, seconds=0.5)),
        asyncio.create_task(_run(agent, "async", "nap", dir=d, seconds=0.5)),
    ]

    async def started() -> bool:
        return all((tmp_path / f"{t}.started").exists() for t in ("sync", "async"))

    await eventually(started, timeout_s=30, what="both started")
    await agent.stop(timeout_s=10)
    assert [kind for kind, _ in await asyncio.gather(*runs)] == ["ok", "ok"]
    assert not agent.alive
