"""Agent processes running several tasks at once (real processes, no Redis): all in one
process, a stop reaches exactly the task it names, and the kill fallback hands the others back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from multiswarm.agents import AgentProcess
from multiswarm.messages import pack, unpack

from .helpers import eventually

pytestmark = pytest.mark.slow

HANDLERS = "tests.integration.agent_handlers:"


async def _run(agent: AgentProcess, task_id: str, handler: str, **payload: Any) -> Any:
    return await agent.run(task_id, 1, HANDLERS + handler, pack(payload), {}, 60.0)


async def _started(folder: Path, *task_ids: str) -> None:
    async def all_started() -> bool:
        return all((folder / f"{t}.started").exists() for t in task_ids)

    await eventually(all_started, timeout_s=30, what=f"{task_ids} started")


@pytest.mark.parametrize("concurrency", [4, 1])
async def test_an_agent_runs_up_to_its_concurrency_at_once(
    tmp_path: Path, concurrency: int
) -> None:
    agent = AgentProcess("c.a0", ("tests.",), concurrency=concurrency)
    try:
        # each waits (boundedly) until all four have started: only tasks running together meet
        wait_s = 30 if concurrency == 4 else 0.2
        replies = await asyncio.gather(
            *(
                _run(agent, f"t{i}", "rendezvous", dir=str(tmp_path), count=4, timeout_s=wait_s)
                for i in range(4)
            )
        )
        assert {kind for kind, _ in replies} == {"ok"}
        seen = [unpack(data) for _, data in replies]
        assert seen == ([4, 4, 4, 4] if concurrency == 4 else [1, 2, 3, 4])
        pids = {(tmp_path / f"t{i}.started").read_text() for i in range(4)}
        assert pids == {str(agent.pid)}
    finally:
        await agent.stop()


async def test_stopping_one_task_stops_only_it(tmp_path: Path) -> None:
    agent = AgentProcess("c.a1", ("tests.",), concurrency=4)
    try:
        d = str(tmp_path)
        runs = {
            "keep1": asyncio.create_task(_run(agent, "keep1", "spin", dir=d, seconds=1.5)),
            "stop_sync": asyncio.create_task(_run(agent, "stop_sync", "spin", dir=d, seconds=60)),
            "stop_async": asyncio.create_task(_run(agent, "stop_async", "nap", dir=d, seconds=60)),
            "keep2": asyncio.create_task(_run(agent, "keep2", "nap", dir=d, seconds=1.5)),
        }
        await _started(tmp_path, *runs)
        pid = agent.pid
        runs["stop_sync"].cancel()
        runs["stop_async"].cancel()
        done: dict[str, Any] = dict(
            zip(runs, await asyncio.gather(*runs.values(), return_exceptions=True))
        )
        assert isinstance(done["stop_sync"], asyncio.CancelledError)
        assert isinstance(done["stop_async"], asyncio.CancelledError)
        # each stopped handler unwound its own finally, inside the same live process
        assert (tmp_path / "stop_sync.unwound").exists()
        assert (tmp_path / "stop_async.unwound").exists()
        assert done["keep1"][0] == "ok" and unpack(done["keep1"][1])["task"] == "keep1"
        assert done["keep2"][0] == "ok" and unpack(done["keep2"][1])["task"] == "keep2"
        assert agent.alive and agent.pid == pid and agent.consecutive_failures == 0
        # the freed slots take new work
        assert (await _run(agent, "next", "nap", dir=d, seconds=0))[0] == "ok"
    finally:
        await agent.stop()


async def test_a_handler_deaf_to_the_stop_kills_its_agent_and_the_others_are_lost(
    tmp_path: Path,
) -> None:
    agent = AgentProcess("c.a2", ("tests.",), concurrency=3)
    try:
        d = str(tmp_path)
        blocked = asyncio.create_task(_run(agent, "blocked", "block", dir=d, seconds=60))
        others = [
            asyncio.create_task(_run(agent, "o1", "spin", dir=d, seconds=60)),
            asyncio.create_task(_run(agent, "o2", "nap", dir=d, seconds=60)),
        ]
        await _started(tmp_path, "blocked", "o1", "o2")
        blocked.cancel()  # time.sleep in a pool thread: no cooperative stop reaches it
        with pytest.raises(asyncio.CancelledError):
            await blocked
        replies = await asyncio.gather(*others)
        # not failed (that would count an attempt): lost, for the worker to hand back
        assert [kind for kind, _ in replies] == ["lost", "lost"], replies
        assert all("killed to stop task blocked" in why for _, why in replies)
        assert not agent.alive and agent.consecutive_failures == 0
        await agent.restart()
        assert (await _run(agent, "after", "nap", dir=d, seconds=0))[0] == "ok"
    finally:
        await agent.stop()


@pytest.mark.parametrize("when", ["stopping", "timed out"])
async def test_a_second_cancel_does_not_cut_the_stop_of_a_deaf_handler_short(
    tmp_path: Path, when: str
) -> None:
    """The stop waits up to STOP_GRACE_S for the handler, then kills the agent. A second
    cancellation in that wait (a second stop of the task, or a stop of a task whose timeout is
    stopping it) cancelled the wait and with it the kill: the deaf handler ran on while the
    worker freed its slot (found in review)."""
    agent = AgentProcess("c.a4", ("tests.",), concurrency=2)
    try:
        d = str(tmp_path)
        timeout = 0.5 if when == "timed out" else 60
        deaf = pack({"dir": d, "seconds": 60})
        run = asyncio.create_task(agent.run("deaf", 1, HANDLERS + "block", deaf, {}, timeout))
        await _started(tmp_path, "deaf")
        if when == "stopping":
            run.cancel()
        await asyncio.sleep(0.3 + (timeout if when == "timed out" else 0))
        run.cancel()  # inside the stop's grace period
        with pytest.raises(asyncio.CancelledError):
            await run
        # the stop went to its end: the agent was killed, not left with the handler running
        assert not agent.alive
    finally:
        await agent.kill()


async def test_a_crashed_agent_fails_every_task_it_held(tmp_path: Path) -> None:
    agent = AgentProcess("c.a3", ("tests.",), concurrency=2)
    try:
        d = str(tmp_path)
        runs = [
            asyncio.create_task(_run(agent, f"r{i}", "nap", dir=d, seconds=60)) for i in range(2)
        ]
        await _started(tmp_path, "r0", "r1")
        agent._channel.proc.kill()  # type: ignore[union-attr]  # a crash, not a stop
        replies = await asyncio.gather(*runs)
        # one of them may have crashed it: each attempt counts
        assert [kind for kind, _ in replies] == ["error", "error"]
        assert agent.failures == 2
    finally:
        await agent.kill()


async def test_an_async_handler_blocking_the_loop_is_charged_not_the_runs_beside_it(
    tmp_path: Path,
) -> None:
    """A run whose timeout passes while another run's async handler blocks the event loop
    cannot be stopped, so the agent is killed. Before decision 125 the timed-out run was
    charged the attempt and the blocker handed back uncounted (``lost``): the blocker ran
    again for ever while the runs beside it went to the dead-letter queue. Now the agent names
    the blocker and it alone is charged; a bystander (a sync run) goes back uncounted as
    before."""
    agent = AgentProcess("c.a5", ("tests.",), concurrency=3)
    try:
        d = str(tmp_path)
        blocker = asyncio.create_task(_run(agent, "hog", "hog", dir=d, seconds=60))
        await _started(tmp_path, "hog")
        bystander = asyncio.create_task(_run(agent, "bystander", "spin", dir=d, seconds=60))
        await _started(tmp_path, "bystander")
        nap = pack({"dir": d, "seconds": 60})
        victim = asyncio.create_task(agent.run("victim", 1, HANDLERS + "nap", nap, {}, 0.5))
        replies = await asyncio.gather(blocker, victim, bystander)
        assert [kind for kind, _ in replies] == ["error", "lost", "lost"], replies
        assert "blocked the agent's event loop" in replies[0][1], replies[0]
        assert "asyncio.to_thread" in replies[0][1]
        assert "task hog blocked it" in replies[1][1], replies[1]
        assert not agent.alive
        # one failure, the blocker's: the timed-out run, handed back, is not one
        assert agent.failures == 1
        await agent.restart()
        assert (await _run(agent, "after", "nap", dir=d, seconds=0))[0] == "ok"
    finally:
        await agent.kill()


async def test_a_blocking_async_handler_timing_out_itself_says_so(tmp_path: Path) -> None:
    agent = AgentProcess("c.a6", ("tests.",), concurrency=2)
    try:
        # the agent up first: a start slower than the timeout (a loaded machine) would stop the
        # run before its handler began to block
        assert (await _run(agent, "warm", "echo"))[0] == "ok"
        hog = pack({"dir": str(tmp_path), "seconds": 60})
        kind, why = await agent.run("hog", 1, HANDLERS + "hog", hog, {}, 0.5)
        assert kind == "error" and "timed out after 0.5 s" in why, why
        assert "blocked the agent's event loop" in why
        assert agent.failures == 1
    finally:
        await agent.kill()
