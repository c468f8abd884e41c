"""Votes and conflict resolution as pure logic: quorum arithmetic, ranking, tally records.

No Redis here: :class:`multiswarm.consensus.Consensus` records and decides votes with Lua
scripts and builds its results with :func:`parse_tally`. See ``multiswarm/consensus.py`` for the
strategies and the quorum argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from multiswarm.errors import InvalidArgumentError, MessageDecodeError
from multiswarm.keys import check_id
from multiswarm.ops.script import decode

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
    check_claims(conflict)
    ranking = [c.swarm_id for c in rank(conflict, strategy)]
    return Resolution(strategy=strategy, winner=ranking[0], ranking=ranking)


def check_claims(conflict: Sequence[Claim]) -> None:
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
    for field, value in decode(list(flat), dict[str, str]).items():
        kind, _, name = field.partition(":")
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
