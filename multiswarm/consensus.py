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

import msgspec

from multiswarm.errors import InvalidArgumentError, MessageDecodeError, NotFound
from multiswarm.keys import Keys, check_id
from multiswarm.messenger import SwarmMessenger
from multiswarm.scripts import Scripts

#: Weight of a claim's priority in the ``priority`` strategy.
PRIORITY_WEIGHTS = {"high": 3, "normal": 2, "low": 1}

#: Conflict-resolution strategies.
STRATEGIES = ("priority", "timestamp", "voting")

#: Vote statuses: ``open`` until decided or past the deadline.
VOTE_STATUSES = ("open", "decided", "no_quorum")

#: Most voters of one proposal (the eligibility list is one script call).
MAX_VOTERS = 10_000

#: Longest voting period, ms (about 3 years; stored times stay exact in Lua's JSON).
MAX_DEADLINE_MS = 10**11

#: Bytes of a proposal's topic kept.
MAX_TOPIC_BYTES = 200

#: How long a closed proposal stays readable after its deadline, ms (24 h).
DEFAULT_RETENTION_MS = 24 * 3600 * 1000

#: Proposals kept in the index (``multiswarm-cli votes list``).
DEFAULT_INDEX_LEN = 1000


def votes_key(keys: Keys, proposal_id: str = "") -> str:
    """The one key builder of this module, in the namespace's slot: ``{ns}:votes`` (index zset)
    and ``{ns}:votes:<proposal id>`` (one proposal's hash)."""
    return (
        "{"
        + keys.ns
        + "}:votes"
        + (":" + check_id(proposal_id, "proposal id") if proposal_id else "")
    )


def quorum(n: int) -> int:
    """Votes an option needs among ``n`` voters: ``floor(2n/3) + 1``.

    With ``n = 3f + 1`` this is ``2f + 1``. Two quorums overlap in ``2q - n > n/3 >= f`` voters,
    so they share an honest one, who votes once: no two options can both reach it.
    """
    if n < 1:
        raise InvalidArgumentError("a vote needs at least one voter")
    return 2 * n // 3 + 1


def max_faulty(n: int) -> int:
    """Most faulty voters a vote among ``n`` tolerates: the largest ``f`` with ``n >= 3f + 1``."""
    if n < 1:
        raise InvalidArgumentError("a vote needs at least one voter")
    return (n - 1) // 3


# -- priority and timestamp ---------------------------------------------------------------------
class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """One swarm's claim in a conflict.

    Attributes
    ----------
    swarm_id:
        The claimant.
    priority:
        ``high`` | ``normal`` | ``low`` (weights 3, 2, 1).
    ts_ms:
        When the claim was made, ms; compare claims stamped by one clock (e.g. the Redis
        server's ``TIME``) for first come, first served to mean anything.
    """

    swarm_id: str
    priority: str = "normal"
    ts_ms: int = 0

    def __post_init__(self) -> None:
        check_id(self.swarm_id, "swarm id")
        if self.priority not in PRIORITY_WEIGHTS:
            raise InvalidArgumentError(
                f"priority {self.priority!r} not in {sorted(PRIORITY_WEIGHTS)}"
            )


class Resolution(msgspec.Struct, frozen=True, kw_only=True):
    """How a conflict was resolved.

    Attributes
    ----------
    strategy:
        The strategy that decided (the fallback's name when a vote had no quorum).
    winner:
        The winning swarm id, None when nobody won (a vote without quorum and no fallback).
    ranking:
        Claimants best first (priority, timestamp); for a vote, the winner alone (or empty).
    proposal_id:
        The vote's proposal id ('' without a vote).
    status:
        ``resolved`` (priority, timestamp) | ``decided`` | ``no_quorum`` (voting).
    """

    strategy: str
    winner: str | None
    ranking: list[str]
    proposal_id: str = ""
    status: str = "resolved"


def rank(conflict: Sequence[Claim], strategy: str) -> list[Claim]:
    """Claims best first under ``priority`` or ``timestamp``. Raises ValueError otherwise."""
    if strategy == "priority":
        return sorted(conflict, key=lambda c: (-PRIORITY_WEIGHTS[c.priority], c.ts_ms, c.swarm_id))
    if strategy == "timestamp":
        return sorted(conflict, key=lambda c: (c.ts_ms, c.swarm_id))
    if strategy == "voting":
        raise InvalidArgumentError("the voting strategy needs Redis: use Consensus.resolve")
    raise InvalidArgumentError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")


def resolve(conflict: Sequence[Claim], strategy: str = "priority") -> Resolution:
    """Resolve a conflict by ``priority`` or ``timestamp`` (pure; no Redis).

    Raises
    ------
    ValueError
        No claims, a swarm claiming twice, or an unknown strategy (``voting``: use
        :meth:`Consensus.resolve`).
    """
    _check_claims(conflict)
    ranking = [c.swarm_id for c in rank(conflict, strategy)]
    return Resolution(strategy=strategy, winner=ranking[0], ranking=ranking)


def _check_claims(conflict: Sequence[Claim]) -> None:
    if not conflict:
        raise InvalidArgumentError("a conflict needs at least one claim")
    ids = [c.swarm_id for c in conflict]
    if len(set(ids)) != len(ids):
        raise InvalidArgumentError(f"a swarm claims more than once: {ids}")


# -- voting -------------------------------------------------------------------------------------
class VoteReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Consensus.vote` did.

    Attributes
    ----------
    outcome:
        ``recorded`` | ``duplicate`` (same vote again) | ``equivocation`` (a different second
        vote: this voter's votes are discarded) | ``discarded`` (the voter equivocated before)
        | ``closed`` (the vote had ended; not counted).
    status:
        The proposal's status after the call.
    result:
        The decided option, or ''.
    """

    outcome: str
    status: str
    result: str


class VoteMeta(msgspec.Struct, kw_only=True):
    """The ``meta`` field of a proposal's hash (written by the vote scripts)."""

    id: str
    topic: str = ""
    proposer: str = ""
    options: str = ""
    n: int = 0
    quorum: int = 0
    created_ms: int = 0
    deadline_ms: int = 0
    status: str = "open"
    result: str = ""
    closed_ms: int = 0


class VoteResult(msgspec.Struct, frozen=True, kw_only=True):
    """A proposal as recorded.

    Attributes
    ----------
    id, topic, proposer:
        The proposal.
    options:
        Its options, in proposal order.
    status:
        ``open`` | ``decided`` | ``no_quorum``.
    result:
        The decided option, or ''.
    n, quorum, max_faulty:
        Eligible voters, votes needed, faulty voters tolerated.
    counts:
        Option -> valid votes (equivocators' votes excluded).
    votes:
        Voter -> option, for voters with a valid vote.
    equivocators:
        Voter -> the different options it voted (all its votes are discarded).
    missing:
        Eligible voters that did not vote.
    created_ms, deadline_ms, closed_ms:
        Server-clock ms (closed_ms 0 while open).
    """

    id: str
    topic: str
    proposer: str
    options: list[str]
    status: str
    result: str
    n: int
    quorum: int
    max_faulty: int
    counts: dict[str, int]
    votes: dict[str, str]
    equivocators: dict[str, list[str]]
    missing: list[str]
    created_ms: int
    deadline_ms: int
    closed_ms: int

    def announcement(self) -> dict[str, Any]:
        """Payload of the ``consensus_result`` message."""
        return {
            "proposal": self.id,
            "topic": self.topic,
            "status": self.status,
            "result": self.result or None,
            "quorum": self.quorum,
            "n": self.n,
            "counts": self.counts,
            "equivocators": sorted(self.equivocators),
            "missing": len(self.missing),
            "closed_ms": self.closed_ms,
        }


_meta_decoder = msgspec.json.Decoder(VoteMeta)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def parse_tally(meta_raw: bytes | str, flat: Sequence[bytes | str]) -> VoteResult:
    """Build a :class:`VoteResult` from ``tally_vote.lua``'s reply. Raises MessageDecodeError."""
    try:
        meta = _meta_decoder.decode(meta_raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise MessageDecodeError(f"corrupt vote record: {e}") from e
    options = [o for o in meta.options.split(",") if o]
    counts = dict.fromkeys(options, 0)
    eligible: list[str] = []
    stored: dict[str, str] = {}
    equivocators: dict[str, list[str]] = {}
    for i in range(0, len(flat), 2):
        kind, _, name = _s(flat[i]).partition(":")
        value = _s(flat[i + 1])
        if kind == "e":
            eligible.append(name)
        elif kind == "v":
            stored[name] = value
        elif kind == "x":
            equivocators[name] = value.split(",")
        elif kind == "c":
            counts[name] = int(value)
    votes = {v: o for v, o in sorted(stored.items()) if v not in equivocators}
    voted = set(stored) | set(equivocators)
    return VoteResult(
        id=meta.id,
        topic=meta.topic,
        proposer=meta.proposer,
        options=options,
        status=meta.status,
        result=meta.result,
        n=meta.n,
        quorum=meta.quorum,
        max_faulty=max_faulty(meta.n) if meta.n else 0,
        counts=counts,
        votes=votes,
        equivocators=dict(sorted(equivocators.items())),
        missing=sorted(v for v in eligible if v not in voted),
        created_ms=meta.created_ms,
        deadline_ms=meta.deadline_ms,
        closed_ms=meta.closed_ms,
    )


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
        deadline_at, q = await self.scripts.call(
            "propose_vote",
            [votes_key(self.keys, pid), votes_key(self.keys)],
            [
                pid,
                topic,
                self.sender,
                ",".join(opts),
                deadline_ms,
                self.retention_ms,
                self.index_len,
                *who,
            ],
        )
        await self._announce(
            "consensus_proposal",
            {
                "proposal": pid,
                "topic": topic,
                "options": opts,
                "voters": who,
                "quorum": int(q),
                "deadline_ms": int(deadline_at),
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
        key = votes_key(self.keys, proposal_id)
        outcome, status, result, closed_now = await self.scripts.call(
            "cast_vote", [key], [check_id(voter, "voter id"), check_id(option, "option")]
        )
        if int(closed_now):
            await self._announce("consensus_result", (await self.tally(proposal_id)).announcement())
        return VoteReceipt(outcome=_s(outcome), status=_s(status), result=_s(result))

    async def tally(self, proposal_id: str) -> VoteResult:
        """The proposal as recorded; ends it ``no_quorum`` (and announces) once past the
        deadline undecided. Idempotent. Raises NotFound."""
        closed_now, meta, flat = await self.scripts.call(
            "tally_vote", [votes_key(self.keys, proposal_id)], []
        )
        result = parse_tally(meta, flat)
        if int(closed_now):
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
            lambda: self.client.zrevrange(votes_key(self.keys), 0, max(0, limit - 1))
        )
        ids = [_s(i) for i in raw if isinstance(i, (bytes, str))]
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
        _check_claims(conflict)
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
