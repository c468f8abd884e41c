"""The vote scripts: KEYS are one proposal's hash (and the proposals index), keys.py."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner


class Proposed(msgspec.Struct, array_like=True, frozen=True):
    """propose_vote's reply: the deadline on the server clock (ms) and the quorum."""

    deadline_ms: int
    quorum: int


class Cast(msgspec.Struct, array_like=True, frozen=True):
    """cast_vote's reply; ``closed_now`` when this vote ended the proposal."""

    outcome: str
    status: str
    result: str
    closed_now: bool


class Tally(msgspec.Struct, array_like=True, frozen=True):
    """tally_vote's reply: the meta JSON and the proposal hash as a flat field/value list."""

    closed_now: bool
    meta: bytes
    fields: list[str]


PROPOSE = Script("propose_vote", Proposed, request_id=True)
CAST = Script("cast_vote", Cast, request_id=True)
TALLY = Script("tally_vote", Tally, request_id=True)


async def propose_vote(
    scripts: ScriptRunner,
    keys: Keys,
    proposal_id: str,
    *,
    topic: str,
    proposer: str,
    options: Sequence[str],
    deadline_ms: int,
    retention_ms: int,
    index_len: int,
    voters: Sequence[str],
) -> Proposed:
    """Open a proposal. Raises AlreadyExists, BadRequest."""
    return await PROPOSE(
        scripts,
        [keys.votes(proposal_id), keys.votes_index],
        [
            proposal_id,
            topic,
            proposer,
            ",".join(options),
            deadline_ms,
            retention_ms,
            index_len,
            *voters,
        ],
    )


async def cast_vote(
    scripts: ScriptRunner, keys: Keys, proposal_id: str, voter: str, option: str
) -> Cast:
    """Record one vote. Raises NotFound, NotEligible, BadRequest."""
    return await CAST(scripts, [keys.votes(proposal_id)], [voter, option])


async def tally_vote(scripts: ScriptRunner, keys: Keys, proposal_id: str) -> Tally:
    """Read the proposal, ending it ``no_quorum`` once past its deadline. Raises NotFound."""
    return await TALLY(scripts, [keys.votes(proposal_id)], [])
