"""Pure messenger logic: framing, byte limits, signing, replay windows, channel names."""

from __future__ import annotations

import json

import pytest

from multiswarm.envelopes import (
    REASONS,
    SeenWindow,
    check_channel,
    check_type,
    decode_message,
    encode_message,
    format_stream_id,
    parse_stream_id,
    resolve_channel,
    secret_key,
    swarm_channel,
    unframe,
)
from multiswarm.errors import InvalidIdError, MessageRejected, MessageTooLargeError
from multiswarm.keys import Keys
from multiswarm.messages import Envelope
from multiswarm.messaging_api import split_message
from multiswarm.script_library import sources

KEYS = Keys("swarm")
CH = "swarm:beta"
KEY = b"s3cret"


def frame(data: bytes, sid: str = "1700000000000-0") -> bytes:
    """What publish_message.lua publishes."""
    return b'{"sid":"' + sid.encode() + b'",' + data[1:]


def env(**fields: object) -> Envelope:
    return Envelope(**{"type": "note", "sender": "alpha", "target": "beta", **fields})  # type: ignore[arg-type]


# -- size limit -----------------------------------------------------------------------------------
def test_limit_is_bytes_not_characters() -> None:
    e = env(payload={"t": "é" * 1000})
    data = encode_message(e, CH)
    assert len(data) > 2000 > len(data.decode())  # two bytes per character
    assert encode_message(e, CH, limit=len(data)) == data
    with pytest.raises(MessageTooLargeError, match=f"{len(data)} bytes"):
        encode_message(e, CH, limit=len(data) - 1)


def test_limit_counts_the_signature() -> None:
    e = env()
    plain = encode_message(e, CH)
    signed = encode_message(e, CH, KEY)
    assert len(signed) == len(plain) + len(b',"sig":""') + 64
    with pytest.raises(MessageTooLargeError):
        encode_message(e, CH, KEY, limit=len(plain))


def test_default_limit_is_one_mebibyte() -> None:
    overhead = len(encode_message(env(payload={"t": ""}), CH))
    fits = env(payload={"t": "a" * (1024 * 1024 - overhead)})
    assert len(encode_message(fits, CH)) == 1024 * 1024
    with pytest.raises(MessageTooLargeError):
        encode_message(env(payload={"t": "a" * (1024 * 1024 - overhead + 1)}), CH)


# -- framing and decoding -------------------------------------------------------------------------
def test_frame_round_trip_keeps_envelope_and_sid() -> None:
    e = env(payload={"n": 1}, correlation_id="c1", sender_agent="alpha.a0")
    data = encode_message(e, CH)
    got = decode_message(CH, frame(data))
    assert (got.sid, got.channel, got.payload, got.correlation_id, got.id) == (
        "1700000000000-0",
        CH,
        {"n": 1},
        "c1",
        e.id,
    )
    assert unframe(frame(data)) == data
    assert unframe(data) == data
    assert decode_message(CH, data).sid == ""
    assert json.loads(frame(data))["sid"] == "1700000000000-0"  # still plain JSON for redis-cli


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "malformed"),
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"payload": {}}', "malformed"),  # no type
        (b'{"type": "note", "payload": [1]}', "malformed"),  # payload not an object
        (b'{"type": "note", "ts_ms": "soon"}', "malformed"),
        (b'{"type": "note", "v": 2}', "unsupported_version"),
        (b'{"type": "bad type"}', "invalid_type"),
        (b'{"type": "note\\n"}', "invalid_type"),
        (b'{"type": ""}', "invalid_type"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MessageRejected) as caught:
        decode_message(CH, raw)
    assert caught.value.reason == reason and reason in REASONS
    assert isinstance(caught.value, ValueError)


def test_oversized_received_message_is_rejected() -> None:
    data = encode_message(env(payload={"t": "x" * 500}), CH)
    with pytest.raises(MessageRejected, match="too_large"):
        decode_message(CH, data, limit=100)


def test_user_defined_types_pass() -> None:
    for kind in ("coordination_request", "swarm.agent.started", "myapp:ping-2", "X" * 64):
        assert decode_message(CH, encode_message(env(type=kind), CH)).type == kind


# -- signing --------------------------------------------------------------------------------------
def test_signed_message_verifies_live_and_framed() -> None:
    e = env(payload={"z": 1, "a": [1.5, "é", None]})
    data = encode_message(e, CH, KEY)
    assert json.loads(data)["sig"]
    assert decode_message(CH, data, key=KEY).payload == e.payload
    assert decode_message(CH, frame(data), key=KEY).sig == json.loads(data)["sig"]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: encode_message(env(), CH), "unsigned"),
        (lambda d: d.replace(b'"alpha"', b'"mallory"'), "forged"),
        (lambda d: d[:-10] + b'00000000"}', "forged"),
        (lambda d: encode_message(env(), CH, b"other key"), "forged"),
        (lambda d: encode_message(env(), "swarm:gamma", KEY), "forged"),  # moved to another channel
        (lambda d: d[:-3] + b'"}', "unsigned"),
    ],
)
def test_unsigned_and_forged_messages_are_refused(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    data = mutate(encode_message(env(), CH, KEY))
    with pytest.raises(MessageRejected) as caught:
        decode_message(CH, data, key=KEY)
    assert caught.value.reason == reason


def test_stale_messages_are_refused_against_the_reference_time() -> None:
    data = encode_message(env(ts_ms=1_000_000), CH, KEY)
    assert decode_message(CH, data, key=KEY, now_ms=1_000_000 + 300_000).ts_ms == 1_000_000
    for now in (1_000_000 + 300_001, 1_000_000 - 300_001):
        with pytest.raises(MessageRejected, match="stale"):
            decode_message(CH, data, key=KEY, now_ms=now)
    # without signing, age is not checked
    assert decode_message(CH, data, now_ms=10**13).ts_ms == 1_000_000


def test_seen_window_refuses_replays_and_stays_bounded() -> None:
    seen = SeenWindow(window_ms=1000, max_ids=3)
    seen.check("a", now_ms=0)
    with pytest.raises(MessageRejected, match="replayed"):
        seen.check("a", now_ms=500)
    seen.check("b", now_ms=600)
    seen.check("a", now_ms=1001)  # "a" left the window (and would be stale anyway)
    for i in range(10):
        seen.check(f"x{i}", now_ms=1100)
    assert len(seen) == 3


def test_an_id_is_kept_a_window_past_its_message_s_own_time() -> None:
    """A message from a sender whose clock is ahead stays fresh until a window after its own
    time: its id was forgotten a window after receipt, and a replay between the two passed both
    checks (found in review)."""
    seen = SeenWindow(window_ms=500)
    seen.check("ahead", now_ms=1000, sent_ms=1400)
    with pytest.raises(MessageRejected, match="replayed"):
        seen.check("ahead", now_ms=1600)  # past receipt + window, within its time + window
    seen.check("ahead", now_ms=1901)  # stale by then anyway (decode_message refuses it)


def test_secret_key() -> None:
    assert secret_key(None) is None and secret_key("") is None and secret_key(b"") is None
    assert secret_key("k") == b"k" and secret_key(b"k") == b"k"


# -- names ----------------------------------------------------------------------------------------
def test_channels() -> None:
    assert swarm_channel(KEYS, "beta") == "swarm:beta"
    for fixed in ("swarm:global", "swarm:tasks", "swarm:reply:alpha", "swarm:topic-1"):
        assert check_channel(KEYS, fixed) == fixed
    for bad in ("other:beta", "swarm:", "swarm:a:b", "swarm:reply:", "swarm:x y", "swarm:x\n"):
        with pytest.raises(InvalidIdError):
            check_channel(KEYS, bad)
    for reserved in ("global", "coordination", "agents", "tasks", "events", "reply"):
        with pytest.raises(InvalidIdError, match="reserved"):
            swarm_channel(KEYS, reserved)
    assert resolve_channel(KEYS, "global") == "swarm:global"
    assert resolve_channel(KEYS, "beta") == "swarm:beta"
    assert resolve_channel(KEYS, "reply:alpha") == "swarm:reply:alpha"
    assert resolve_channel(KEYS, "swarm:events") == "swarm:events"
    with pytest.raises(InvalidIdError):
        check_type("no spaces")
    assert check_type("task_completed") == "task_completed"


def test_stream_ids_compare_numerically() -> None:
    assert parse_stream_id("1700000000000-10") > parse_stream_id("1700000000000-9")
    assert parse_stream_id(b"99-0") < parse_stream_id("100-0")
    assert parse_stream_id("0") == (0, 0) and parse_stream_id(5) == (5, 0)
    assert format_stream_id((12, 3)) == "12-3"
    with pytest.raises(ValueError):
        parse_stream_id("abc")


def test_split_message() -> None:
    assert split_message({"type": "conflict_detected", "payload": {"r": 1}}) == (
        "conflict_detected",
        {"r": 1},
    )
    assert split_message({"type": "t", "a": 1, "b": 2}) == ("t", {"a": 1, "b": 2})
    assert split_message({"a": 1}) == ("message", {"a": 1})
    assert split_message({"payload": 5}) == ("message", {"value": 5})
    assert split_message(Envelope(type="x", payload={"k": "v"})) == ("x", {"k": "v"})


def test_messenger_scripts_have_their_contract_header() -> None:
    for name in ("publish_message", "dead_letter_message"):
        body = sources()[name].split("\n-- " + name + ":", 1)[1]
        assert "KEYS[1]" in body and "ARGV[1]" in body and "-- returns" in body


def test_the_message_secret_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.asyncio import Redis

    from multiswarm.api import Multiswarm
    from multiswarm.config import Settings, from_env
    from multiswarm.messaging_api import get_messenger
    from multiswarm.messenger import SwarmMessenger

    assert from_env({"MULTISWARM_SECRET": "s3cret"}).message_secret == "s3cret"
    assert from_env({}).message_secret == ""
    client = Redis()  # never connected: building a messenger does no I/O
    monkeypatch.delenv("MULTISWARM_SECRET", raising=False)
    assert not SwarmMessenger(client, KEYS).signing

    def host(settings: Settings) -> Multiswarm:  # building the facade does no I/O either
        return Multiswarm(client, settings.replace(namespace=KEYS.ns))

    assert get_messenger(host(Settings(message_secret="s3cret")), "alpha").signing
    assert not get_messenger(host(Settings()), "alpha").signing
    # a messenger given no secret still takes the environment's (callers not passing
    # Settings.message_secret yet keep signing)
    monkeypatch.setenv("MULTISWARM_SECRET", "s3cret")
    assert SwarmMessenger(client, KEYS).signing
    assert not SwarmMessenger(client, KEYS, secret="").signing
