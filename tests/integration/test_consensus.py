"""Votes among swarms on a real Redis, voters in separate processes (ops_peer.py).

Faulty voters are silent (never vote), liars (vote for the other option) or equivocators (vote
the other option, then the honest one). They act before the honest voters: the adversarial order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from click.testing import CliRunner

from multiswarm.cli import cli
from multiswarm.cli_ops import votes
from multiswarm.config import Settings
from multiswarm.connection import Client
from multiswarm.consensus import Claim, Consensus
from multiswarm.errors import AlreadyExists, BadRequest, NotEligible, NotFound
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger
from multiswarm.scripts import Scripts
from multiswarm.votes import max_faulty, quorum

from .helpers import eventually
from .ops_helpers import OpsPeer, Spawn, ops_peers

__all__ = ["ops_peers"]

FAULTY_MODES = ("equivocate", "silent", "liar")


async def announcement(client: Client, keys: Keys, proposal: str) -> dict[str, Any]:
    """The recorded ``consensus_result`` of ``proposal`` on the coordination channel."""
    listener = SwarmMessenger(client, keys, "observer")

    async def first() -> dict[str, Any]:
        async with contextlib.aclosing(
            listener.listen([keys.ch_coordination], since="0")
        ) as stream:
            async for _channel, env in stream:
                if env.type == "consensus_result" and env.payload["proposal"] == proposal:
                    return env.payload
        raise AssertionError("listen ended")

    return await asyncio.wait_for(first(), 30)


async def start_voters(
    ops_peers: Spawn, n: int, faulty: int
) -> tuple[list[str], list[OpsPeer], list[OpsPeer]]:
    """n voters v0..; the first ``faulty`` cycle through FAULTY_MODES. (ids, faulty, honest)"""
    ids = [f"v{i}" for i in range(n)]
    modes = [FAULTY_MODES[i % 3] if i < faulty else "honest" for i in range(n)]
    peers = await asyncio.gather(
        *(ops_peers("vote", v, m, "approve", "reject") for v, m in zip(ids, modes))
    )
    return ids, list(peers[:faulty]), list(peers[faulty:])


async def cast(peers: list[OpsPeer], proposal: str) -> list[dict[str, Any]]:
    await asyncio.gather(*(p.send(proposal) for p in peers))
    return [await p.event() for p in peers]


@pytest.mark.parametrize("f", [1, 2])
async def test_decides_with_f_faulty_out_of_3f_plus_1(
    scripts: Scripts,
    keys: Keys,
    client: Client,
    ops_peers: Spawn,
    f: int,
) -> None:
    n = 3 * f + 1
    ids, faulty, honest = await start_voters(ops_peers, n, f)
    consensus = Consensus(scripts, keys, sender="proposer")
    pid = await consensus.propose("deploy v2?", ["approve", "reject"], ids, deadline_ms=60_000)

    faulty_events = await cast(faulty, pid)
    assert all(s == "open" for e in faulty_events for s in e["statuses"]), faulty_events
    honest_events = await cast(honest, pid)
    assert all(e["outcomes"] == ["recorded"] for e in honest_events), honest_events

    result = await consensus.wait(pid, timeout_s=30)
    assert (result.status, result.result) == ("decided", "approve")
    assert (result.n, result.quorum, result.max_faulty) == (n, quorum(n), f) == (n, 2 * f + 1, f)
    equivocators = {f"v{i}" for i in range(f) if FAULTY_MODES[i % 3] == "equivocate"}
    liars = sum(1 for i in range(f) if FAULTY_MODES[i % 3] == "liar")
    assert set(result.equivocators) == equivocators
    assert result.counts == {"approve": 2 * f + 1, "reject": liars}
    assert (await consensus.tally(pid)) == result  # recorded once, read as often as wanted
    told = await announcement(client, keys, pid)
    assert (told["status"], told["result"], told["quorum"]) == ("decided", "approve", 2 * f + 1)


@pytest.mark.parametrize("f", [1, 2])
async def test_no_quorum_with_more_than_f_faulty(
    scripts: Scripts,
    keys: Keys,
    client: Client,
    ops_peers: Spawn,
    f: int,
) -> None:
    n = 3 * f + 1
    ids, faulty, honest = await start_voters(ops_peers, n, f + 1)
    consensus = Consensus(scripts, keys, sender="proposer")
    pid = await consensus.propose("deploy v2?", ["approve", "reject"], ids, deadline_ms=4000)
    events = await cast(faulty, pid) + await cast(honest, pid)
    # every vote arrived while the proposal was open, and none of them decided it
    assert all(s == "open" for e in events for s in e["statuses"]), events

    result = await consensus.wait(pid)  # returns once the deadline passed (server clock)
    assert (result.status, result.result) == ("no_quorum", "")
    assert result.counts["approve"] == n - f - 1 < quorum(n)
    assert result.closed_ms >= result.deadline_ms
    told = await announcement(client, keys, pid)
    assert (told["status"], told["result"]) == ("no_quorum", None)


async def test_vote_rules(scripts: Scripts, keys: Keys) -> None:
    consensus = Consensus(scripts, keys)
    pid = await consensus.propose(
        "pick", ["x", "y"], ["a", "b", "c", "d"], 60_000, proposal_id="p1"
    )
    assert pid == "p1"
    with pytest.raises(AlreadyExists):
        await consensus.propose("again", ["x"], ["a"], 1000, proposal_id="p1")
    with pytest.raises(ValueError):
        await consensus.propose("dup", ["x"], ["a", "a"], 1000)
    with pytest.raises(NotEligible):
        await consensus.vote(pid, "mallory", "x")
    with pytest.raises(BadRequest):
        await consensus.vote(pid, "a", "z")
    with pytest.raises(NotFound):
        await consensus.vote("nope", "a", "x")
    assert (await consensus.vote(pid, "a", "x")).outcome == "recorded"
    assert (await consensus.vote(pid, "a", "x")).outcome == "duplicate"
    assert (await consensus.vote(pid, "b", "y")).outcome == "recorded"
    assert (await consensus.vote(pid, "b", "x")).outcome == "equivocation"
    assert (await consensus.vote(pid, "b", "x")).outcome == "discarded"
    mid = await consensus.tally(pid)
    assert mid.counts == {"x": 1, "y": 0} and mid.equivocators == {"b": ["y", "x"]}
    assert mid.missing == ["c", "d"] and mid.status == "open"
    assert (await consensus.vote(pid, "c", "x")).status == "open"
    decided = await consensus.vote(pid, "d", "x")  # 3 of 4 valid: a, c, d (b discarded)
    assert (decided.outcome, decided.status, decided.result) == ("recorded", "decided", "x")
    late = await consensus.vote(pid, "b", "y")
    assert (late.outcome, late.result) == ("discarded", "x")
    # a voter who changes its mind once the vote was decided: said, and counted nowhere (the
    # counts stay those the result was decided on; found in review: x fell below quorum)
    changed = await consensus.vote(pid, "a", "y")
    assert (changed.outcome, changed.result) == ("equivocation", "x")
    final = await consensus.tally(pid)
    assert final.counts == {"x": 3, "y": 0}
    # a tally that changes nothing keeps no request record: a waiter polling every 0.1 s kept a
    # copy of the whole proposal per poll for 120 s (found in review)
    keys_before = await scripts.client.dbsize()
    for _ in range(20):
        await consensus.tally(pid)
    assert await scripts.client.dbsize() == keys_before
    assert [p.id for p in await consensus.proposals()] == ["p1"]


async def test_resolve_by_each_strategy(scripts: Scripts, keys: Keys) -> None:
    consensus = Consensus(scripts, keys)
    claims = [
        Claim(swarm_id="late-high", priority="high", ts_ms=30),
        Claim(swarm_id="early-low", priority="low", ts_ms=10),
        Claim(swarm_id="mid-normal", priority="normal", ts_ms=20),
    ]
    assert (await consensus.resolve(claims, "priority")).winner == "late-high"
    assert (await consensus.resolve(claims, "timestamp")).ranking == [
        "early-low",
        "mid-normal",
        "late-high",
    ]

    voters = ["a", "b", "c", "d"]
    task = asyncio.create_task(
        consensus.resolve(claims, "voting", voters=voters, deadline_ms=60_000)
    )
    proposals = await eventually(consensus.proposals, what="the proposal")
    for v in voters[:3]:
        await consensus.vote(proposals[0].id, v, "mid-normal")
    res = await asyncio.wait_for(task, 30)
    assert (res.strategy, res.winner, res.status) == ("voting", "mid-normal", "decided")

    silent = await consensus.resolve(
        claims, "voting", voters=voters, deadline_ms=300, fallback="timestamp"
    )
    assert (silent.status, silent.strategy, silent.winner) == (
        "no_quorum",
        "timestamp",
        "early-low",
    )


def _invoke(settings: Settings, *args: str) -> tuple[int, str]:
    cli.add_command(votes)
    result = CliRunner().invoke(
        cli,
        ["--redis-url", settings.redis_url, "--namespace", settings.namespace, *args],
        catch_exceptions=False,
    )
    return result.exit_code, result.output


async def test_cli(settings: Settings, scripts: Scripts, keys: Keys) -> None:
    consensus = Consensus(scripts, keys)
    pid = await consensus.propose("scale up?", ["yes", "no"], ["a", "b", "c"], 60_000)
    await consensus.vote(pid, "a", "yes")
    code, out = await asyncio.to_thread(_invoke, settings, "votes", "list", "--json")
    assert code == 0, out
    [listed] = json.loads(out)
    assert (listed["id"], listed["status"], listed["counts"]) == (pid, "open", {"yes": 1, "no": 0})
    code, out = await asyncio.to_thread(_invoke, settings, "votes", "show", pid, "--json")
    assert code == 0 and json.loads(out)["missing"] == ["b", "c"]
    code, out = await asyncio.to_thread(_invoke, settings, "votes", "list")
    assert code == 0 and pid in out
    code, out = await asyncio.to_thread(_invoke, settings, "votes", "show", "nope")
    assert code != 0 and "not found" in out
    assert max_faulty(3) == 0
