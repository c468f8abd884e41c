"""Conflict resolution between swarms: by priority, by time of claim, or by a real vote.

Strategies of :func:`resolve` / :meth:`Consensus.resolve` (``docs/resilience.md``):

- ``priority``: the claim with the highest weight wins (``high`` 3, ``normal`` 2, ``low`` 1); ties
  go to the earlier ``ts_ms``, then the smaller swarm id.
- ``timestamp``: first come, first served (earlier ``ts_ms``, then the smaller swarm id).
- ``voting``: a proposal whose options are the claimants, voted on by named swarms until a
  deadline on the server clock.

Voting (:class:`Consensus`): :meth:`~Consensus.propose` names the options, the ``n`` eligible
voters and the deadline; :meth:`~Consensus.vote` is one Lua script (only eligible voters, one
vote each; a second, different vote is *equivocation*: that voter's votes are discarded). An
option wins when it holds ``q = floor(2n/3) + 1`` valid votes: with ``n >= 3f + 1`` and at most
``f`` faulty voters the honest ones reach ``q`` on their own, and no two options can both reach
it. Past the deadline without quorum the proposal ends ``no_quorum``. The result is written once,
by the script call that ended the vote, and that caller announces it on the coordination channel
(``consensus_result``); the record stays readable (:meth:`~Consensus.tally`) until it expires.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from multiswarm.errors import InvalidArgumentError, NotFound
from multiswarm.keys import Keys, check_id
from multiswarm.messenger import SwarmMessenger
from multiswarm.ops import votes as ops
from multiswarm.ops.script import decode
from multiswarm.scripts import Scripts
from multiswarm.votes import (
    DEFAULT_INDEX_LEN,
    DEFAULT_RETENTION_MS,
    MAX_DEADLINE_MS,
    MAX_TOPIC_BYTES,
    MAX_VOTERS,
    Claim,
    Resolution,
    VoteReceipt,
    VoteResult,
    check_claims,
    parse_tally,
    resolve,
)

# what callers imported from here before the pure logic moved to multiswarm.votes
__all__ = ["Claim", "Consensus", "Resolution", "VoteReceipt", "VoteResult"]


class Consensus:
    """Votes among swarms, recorded in Redis, decided and announced once.

    Parameters
    ----------
    scripts:
        Scripts bound to a client.
    keys:
        The namespace.
    sender:
        Sender id of the announcements (``consensus_proposal``, ``consensus_result`` on
        ``<ns>:coordination``).

    Other Parameters
    ----------------
    retention_ms:
        How long a proposal stays readable after its deadline, ms (24 h).
    index_len:
        Proposals kept in the index ``{ns}:votes`` (1000).
    """

    def __init__(
        self,
        scripts: Scripts,
        keys: Keys,
        sender: str = "consensus",
        *,
        retention_ms: int = DEFAULT_RETENTION_MS,
        index_len: int = DEFAULT_INDEX_LEN,
    ) -> None:
        self.scripts = scripts
        self.keys = keys
        self.client = scripts.client
        self.sender = sender
        self.retention_ms = retention_ms
        self.index_len = index_len
        self._messenger: SwarmMessenger | None = None

    @property
    def messenger(self) -> SwarmMessenger:
        if self._messenger is None:
            self._messenger = SwarmMessenger(self.client, self.keys, sender=self.sender)
        return self._messenger

    async def _announce(self, type: str, payload: dict[str, Any]) -> None:
        await self.messenger.publish(self.keys.ch_coordination, type, payload, record=True)

    async def propose(
        self,
        topic: str,
        options: Sequence[str],
        voters: Iterable[str],
        deadline_ms: int,
        *,
        proposal_id: str | None = None,
    ) -> str:
        """Open a vote; returns its proposal id. Announced as ``consensus_proposal``.

        Parameters
        ----------
        topic:
            What is being decided (free text, first 200 bytes kept).
        options:
            The choices, ids (e.g. ``approve``, ``reject``, or claimant swarm ids).
        voters:
            The eligible voters' ids (``n`` of them, distinct, at most 10 000).
        deadline_ms:
            How long the vote stays open, ms from now on the server clock (at most 10**11).
        proposal_id:
            Id to use [default: a random one].

        Raises
        ------
        ValueError
            No option or voter, a duplicate, a deadline below 1 ms (InvalidIdError for ids).
        AlreadyExists
            ``proposal_id`` is in use.
        """
        pid = check_id(proposal_id or uuid.uuid4().hex[:16], "proposal id")
        opts = [check_id(o, "option") for o in options]
        who = [check_id(v, "voter id") for v in voters]
        if not opts or len(set(opts)) != len(opts):
            raise InvalidArgumentError(f"options must be distinct and not empty: {opts}")
        if not who or len(set(who)) != len(who) or len(who) > MAX_VOTERS:
            raise InvalidArgumentError(f"voters must be distinct, 1 to {MAX_VOTERS} of them")
        if not isinstance(deadline_ms, int) or not 1 <= deadline_ms <= MAX_DEADLINE_MS:
            raise InvalidArgumentError(
                f"deadline_ms must be an integer in [1, {MAX_DEADLINE_MS}], got {deadline_ms!r}"
            )
        topic = topic.encode()[:MAX_TOPIC_BYTES].decode(errors="ignore")  # whole characters
        proposed = await ops.propose_vote(
            self.scripts,
            self.keys,
            pid,
            topic=topic,
            proposer=self.sender,
            options=opts,
            deadline_ms=deadline_ms,
            retention_ms=self.retention_ms,
            index_len=self.index_len,
            voters=who,
        )
        await self._announce(
            "consensus_proposal",
            {
                "proposal": pid,
                "topic": topic,
                "options": opts,
                "voters": who,
                "quorum": proposed.quorum,
                "deadline_ms": proposed.deadline_ms,
            },
        )
        return pid

    async def vote(self, proposal_id: str, voter: str, option: str) -> VoteReceipt:
        """Cast ``voter``'s vote for ``option``; announce the result if this vote ended it.

        Raises
        ------
        NotFound
            No such proposal (or it expired).
        NotEligible
            ``voter`` is not one of the proposal's voters.
        BadRequest
            ``option`` is not one of its options (a ValueError).
        """
        cast = await ops.cast_vote(
            self.scripts,
            self.keys,
            proposal_id,
            check_id(voter, "voter id"),
            check_id(option, "option"),
        )
        if cast.closed_now:
            await self._announce("consensus_result", (await self.tally(proposal_id)).announcement())
        return VoteReceipt(outcome=cast.outcome, status=cast.status, result=cast.result)

    async def tally(self, proposal_id: str) -> VoteResult:
        """The proposal as recorded; ends it ``no_quorum`` (and announces) once past the
        deadline undecided. Idempotent. Raises NotFound."""
        tally = await ops.tally_vote(self.scripts, self.keys, proposal_id)
        result = parse_tally(tally.meta, tally.fields)
        if tally.closed_now:
            await self._announce("consensus_result", result.announcement())
        return result

    async def wait(
        self, proposal_id: str, timeout_s: float | None = None, poll_s: float = 0.1
    ) -> VoteResult:
        """Poll :meth:`tally` until the vote is decided or ended without quorum.

        Without ``timeout_s`` it returns by the deadline (server clock) at the latest.

        Raises
        ------
        TimeoutError
            Still open after ``timeout_s``.
        """
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            result = await self.tally(proposal_id)
            if result.status != "open":
                return result
            if give_up is not None and time.monotonic() > give_up:
                raise TimeoutError(f"vote {proposal_id} still open after {timeout_s} s")
            await asyncio.sleep(poll_s)

    async def proposals(self, limit: int = 20) -> list[VoteResult]:
        """The newest proposals still kept (by expiry, newest first)."""
        raw = await self.scripts.read(
            lambda: self.client.zrevrange(self.keys.votes_index, 0, max(0, limit - 1))
        )
        ids = decode(raw, list[str])
        out = []
        for pid in ids:
            try:
                out.append(await self.tally(pid))
            except NotFound:  # expired between the two reads
                continue
        return out

    async def resolve(
        self,
        conflict: Sequence[Claim],
        strategy: str = "priority",
        *,
        voters: Iterable[str] = (),
        deadline_ms: int = 30_000,
        topic: str = "",
        fallback: str | None = None,
    ) -> Resolution:
        """Resolve a conflict by any strategy; ``voting`` proposes, then waits for the vote.

        Parameters
        ----------
        conflict:
            The claims; under ``voting`` the options are the claimants' swarm ids.
        strategy:
            ``priority`` | ``timestamp`` | ``voting``.
        voters:
            Voting: the eligible voters (n); they vote with :meth:`vote`.
        deadline_ms:
            Voting: how long the vote stays open, ms (30 000).
        topic:
            Voting: what is decided [default: ``conflict between <ids>``].
        fallback:
            Voting: ``priority`` or ``timestamp`` to decide anyway when there is no quorum
            [default: none, ``winner`` is None].

        Raises
        ------
        ValueError
            Bad claims, strategy or fallback.
        """
        if strategy != "voting":
            return resolve(conflict, strategy)
        check_claims(conflict)
        if fallback is not None and fallback not in ("priority", "timestamp"):
            raise InvalidArgumentError(f"fallback must be priority or timestamp, got {fallback!r}")
        ids = [c.swarm_id for c in conflict]
        pid = await self.propose(
            topic or "conflict between " + ",".join(ids), ids, voters, deadline_ms
        )
        result = await self.wait(pid)
        if result.status == "decided":
            return Resolution(
                strategy="voting",
                winner=result.result,
                ranking=[result.result],
                proposal_id=pid,
                status="decided",
            )
        if fallback is not None:
            ranked = resolve(conflict, fallback)
            return Resolution(
                strategy=fallback,
                winner=ranked.winner,
                ranking=ranked.ranking,
                proposal_id=pid,
                status="no_quorum",
            )
        return Resolution(
            strategy="voting", winner=None, ranking=[], proposal_id=pid, status="no_quorum"
        )
