"""Pure logic of breakers, resources and consensus: no Redis."""

from __future__ import annotations

import msgspec
import pytest

from multiswarm.breakers import BreakerConfig, BreakerRecord, view
from multiswarm.errors import ConfigError, InvalidIdError, MessageDecodeError
from multiswarm.keys import Keys
from multiswarm.votes import (
    Claim,
    max_faulty,
    parse_tally,
    quorum,
    rank,
    resolve,
)


def test_keys_share_the_namespace_slot() -> None:
    keys = Keys("swarm")
    assert keys.breakers == "{swarm}:breakers"
    assert keys.resources == "{swarm}:resources"
    assert keys.resource_holders == "{swarm}:resources:holders"
    assert keys.votes_index == "{swarm}:votes"
    assert keys.votes("p1") == "{swarm}:votes:p1"
    with pytest.raises(InvalidIdError):
        keys.votes("p1}:x")


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_threshold": 0},
        {"open_ms": -1},
        {"success_threshold": 4},
        {"half_open_calls": 2},
    ],
)
def test_breaker_config_is_validated(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        BreakerConfig(**bad)


def test_breaker_view_applies_the_lazy_rules() -> None:
    rec = BreakerRecord(state="open", opened_ms=1000, open_ms=500, opens=1)
    assert (view("b", rec, 1200).state, view("b", rec, 1200).retry_after_ms) == ("open", 300)
    assert view("b", rec, 1500).state == "half_open"
    trial = BreakerRecord(
        state="half_open", trials=2, successes=1, trial_ms=2000, trial_timeout_ms=100, open_ms=500
    )
    assert view("b", trial, 2050).state == "half_open"
    late = view("b", trial, 2100)  # an unreported trial counts as a failure
    assert (late.state, late.retry_after_ms, late.trials) == ("open", 500, 0)
    idle = BreakerRecord(state="half_open", trials=0, trial_ms=0, trial_timeout_ms=100)
    assert view("b", idle, 10_000).state == "half_open"  # no trial out: nothing times out
    assert view("b", BreakerRecord(), 5).config == BreakerConfig()


def test_quorum_is_a_bft_quorum() -> None:
    assert [quorum(n) for n in (1, 3, 4, 7, 10)] == [1, 3, 3, 5, 7]
    assert [max_faulty(n) for n in (1, 3, 4, 7, 10)] == [0, 0, 1, 2, 3]
    for n in range(1, 500):
        q, f = quorum(n), max_faulty(n)
        assert n >= 3 * f + 1
        assert q <= n - f  # the honest voters alone can decide
        assert 2 * q - n > f  # two quorums share an honest voter
        assert f + 1 <= q or n < 3  # the faulty alone never decide
    with pytest.raises(ValueError):
        quorum(0)


def test_priority_and_timestamp() -> None:
    claims = [
        Claim(swarm_id="b", priority="normal", ts_ms=5),
        Claim(swarm_id="a", priority="normal", ts_ms=5),
        Claim(swarm_id="c", priority="high", ts_ms=9),
        Claim(swarm_id="d", priority="low", ts_ms=1),
        Claim(swarm_id="e", priority="normal", ts_ms=2),
    ]
    assert resolve(claims, "priority").ranking == ["c", "e", "a", "b", "d"]
    assert resolve(claims, "timestamp").ranking == ["d", "e", "a", "b", "c"]
    assert resolve(claims).winner == "c"
    with pytest.raises(ValueError, match=r"Consensus\.resolve"):
        rank(claims, "voting")
    with pytest.raises(ValueError):
        resolve(claims, "coin")
    with pytest.raises(ValueError):
        resolve([])
    with pytest.raises(ValueError):
        resolve([claims[0], claims[0]])
    with pytest.raises(ValueError):
        Claim(swarm_id="x", priority="urgent")


def test_parse_tally() -> None:
    meta = msgspec.json.encode(
        {"id": "p", "options": "x,y", "n": 4, "quorum": 3, "status": "open", "deadline_ms": 9}
    )
    flat = [
        b"meta",
        meta,
        b"e:a",
        b"1",
        b"e:b",
        b"1",
        b"e:c",
        b"1",
        b"e:d",
        b"1",
        b"v:a",
        b"x",
        b"v:b",
        b"y",
        b"x:b",
        b"y,x",
        b"c:x",
        b"1",
    ]
    r = parse_tally(meta, flat)
    assert r.counts == {"x": 1, "y": 0} and r.votes == {"a": "x"}
    assert r.equivocators == {"b": ["y", "x"]} and r.missing == ["c", "d"]
    assert (r.max_faulty, r.announcement()["result"]) == (1, None)
    with pytest.raises(MessageDecodeError):
        parse_tally(b"[]", [])
