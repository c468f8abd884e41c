from __future__ import annotations

import re

import msgspec
import pytest
import redis.exceptions

from multiswarm import errors
from multiswarm.keys import TASK_STATUSES, Keys, TaskKeys
from multiswarm.messages import (
    Envelope,
    Task,
    decode_envelope,
    decode_task,
    encode_envelope,
    pack,
    unpack,
)
from multiswarm.script_library import lua_dir
from multiswarm.scripts import translate


def _slot_tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


def test_global_keys_share_one_hash_tag() -> None:
    k = Keys("swarm")
    globals_ = [
        *k.task_keyset,
        k.index,
        *k.swarm_status_all,
        k.leader,
        k.epoch,
        k.rr_cursor,
        k.queue("s1"),
        k.archive,
        k.recoveries,
        k.message_dlq,
    ]
    assert {_slot_tag(key) for key in globals_} == {"swarm"}
    assert k.index == "{swarm}:index" and k.leader == "{swarm}:leader"
    assert k.swarm_status("active") == "{swarm}:status:active"


def test_per_swarm_keys_are_tagged_by_swarm_and_channels_keep_seed_names() -> None:
    k = Keys("swarm")
    assert k.state("abc") == "swarm:state:{abc}" and _slot_tag(k.snapshots("abc")) == "abc"
    assert (k.ch_global, k.ch_coordination, k.ch_agents, k.ch_tasks, k.ch_events) == (
        "swarm:global",
        "swarm:coordination",
        "swarm:agents",
        "swarm:tasks",
        "swarm:events",
    )


def test_task_keyset_order_matches_the_lua_prelude() -> None:
    """TaskKeys' fields are the names load_task_keys gives KEYS[i], in the same order."""
    k = Keys("n")
    ks = k.task_keyset
    assert len(ks) == 26 and ks[0] == k.tasks and ks[11] == k.epoch
    assert ks[18:] == [k.task_status(s) for s in TASK_STATUSES]
    lua = (lua_dir() / "lib" / "02_tasks.lua").read_text()
    body = lua[lua.index("local function load_task_keys()") :].split("\nend\n", 1)[0]
    by_index: dict[int, str] = {}
    for names, indexes in re.findall(r"^\s*(TK\.[\w., ]+?)\s*=\s*(KEYS\[[^\n]+)$", body, re.M):
        fields = [n.strip().removeprefix("TK.") for n in names.split(",")]
        numbers = [int(i) for i in re.findall(r"KEYS\[(\d+)\]", indexes)]
        by_index.update(zip(numbers, fields))
    named = [f for f in TaskKeys.__struct_fields__ if f != "statuses"]
    assert [by_index[i] for i in sorted(by_index)] == named
    assert "for i, s in ipairs(STATUS_ORDER) do TASK_STATUS_KEY[s] = KEYS[18 + i] end" in body
    assert "'pending', 'ready', 'assigned', 'running', 'completed', 'failed', 'dead'" in lua
    assert TaskKeys.__struct_fields__[-1] == "statuses" and len(named) == 18


def test_every_script_has_a_contract_header() -> None:
    """Each script's own file opens with its contract: name, KEYS, ARGV (when it takes any)
    and what it returns — read from the file alone, not the prelude prepended to it."""
    for path in sorted(lua_dir().glob("*.lua")):
        text = path.read_text()
        lines = text.splitlines()
        n = next((i for i, line in enumerate(lines) if not line.startswith("--")), len(lines))
        header, body = "\n".join(lines[:n]), "\n".join(lines[n:])
        assert text.startswith(f"-- {path.stem}: "), f"{path.name} lacks its name line"
        assert " returns " in f" {header} ".replace("\n", " "), f"{path.name}: no returns"
        assert "KEYS[1" in header, f"{path.name}: no KEYS"
        if "ARGV[" in body:
            assert "ARGV[" in header, f"{path.name} uses ARGV but its header names none"


def test_envelope_roundtrip_and_limits_in_bytes() -> None:
    env = Envelope(type="request", sender="s1", payload={"text": "héllo"})
    assert decode_envelope(encode_envelope(env)) == env
    # 400k three-byte characters: under 1 MiB characters, over 1 MiB bytes
    big = Envelope(type="x", payload={"text": "€" * 400_000})
    with pytest.raises(errors.MessageTooLargeError):
        encode_envelope(big)
    with pytest.raises(errors.MessageDecodeError):
        decode_envelope(b"{not json")
    with pytest.raises(errors.MessageDecodeError):
        decode_envelope(msgspec.json.encode({"no_type": 1}))


def test_task_records_decode_from_msgpack_and_from_json() -> None:
    """MessagePack records (decision 64) and JSON ones of earlier versions, sparse or full,
    decode to the same Task; numbers stay ints, left-out fields take the defaults."""
    fields = {"id": "t", "handler": "m:f", "status": "running", "created_ms": 1_764_000_000_123}
    fields |= {"started_ms": 2**53 - 1, "attempts": 2, "reason": "naïve ✓", "assigned_ms": 5}
    want = Task(
        id="t",
        handler="m:f",
        status="running",
        created_ms=1_764_000_000_123,
        started_ms=2**53 - 1,
        attempts=2,
        reason="naïve ✓",
    )
    for raw in (
        msgspec.msgpack.encode(fields),
        msgspec.json.encode(fields),
        msgspec.json.encode(fields).decode(),
        msgspec.json.encode(msgspec.structs.asdict(want)),
    ):
        got = decode_task(raw)
        assert got == want and type(got.started_ms) is int
        assert (got.swarm, got.deps_left, got.max_attempts) == ("", 0, 3)
    assert decode_task(msgspec.msgpack.encode(want)) == want


def test_corrupt_records_and_payloads_are_typed_errors() -> None:
    with pytest.raises(errors.MessageDecodeError):
        decode_task(b'{"id": 1}')
    for raw in (
        b"",
        b"\xff{not json",
        msgspec.msgpack.encode({"id": 1, "handler": "m:f", "status": "ready"}),
        msgspec.msgpack.encode({"id": "t", "handler": "m:f", "status": "ready", "seq": 1.5}),
        msgspec.msgpack.encode({"id": "t", "handler": "m:f", "status": "ready"}) + b"\x00",
    ):
        with pytest.raises(errors.MessageDecodeError):
            decode_task(raw)
    with pytest.raises(errors.MessageDecodeError):
        unpack(b"\xc1")
    assert unpack(pack({"a": [1, 2]})) == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        ("ILLEGAL_TRANSITION s1 active -> initializing", errors.IllegalTransition),
        ("STALE_EPOCH epoch 1 < 2", errors.StaleEpoch),
        ("NOT_FOUND task x", errors.NotFound),
        ("user_script:1: Something else", errors.ScriptError),
    ],
)
def test_error_replies_become_typed_errors(reply: str, cls: type) -> None:
    err = translate(redis.exceptions.ResponseError(reply))
    assert type(err) is cls and isinstance(err, errors.MultiswarmError)
    if cls is errors.StaleEpoch:
        assert isinstance(err, errors.StaleEpoch) and err.code == "STALE_EPOCH"
