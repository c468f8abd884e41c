"""The dispatch index (scripts/lua/lib/01b_swarm_index.lua) against the swarm records.

After every step of a swarm's life (register, host, scale, pause, dispatch, claim and complete,
finish, delete, worker death, a host that stops beating) the index must say exactly what the
records and the active counts say; and at 2,000 swarms dispatch must still pick as each
strategy says (checked against a reference that reads every record, as dispatch used to).
"""

from __future__ import annotations

import json
import random
from typing import Any, cast

import pytest

from multiswarm.coordinator import SwarmCoordinator
from multiswarm.errors import IllegalTransition
from multiswarm.keys import Keys
from multiswarm.messages import PRIORITIES, Task
from multiswarm.ops.swarms import delete_swarm
from multiswarm.ops.tasks import Outcome
from multiswarm.registry import SwarmRegistry, SwarmSpec, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import hash_fields, hash_value, host, leader

NOOP = "multiswarm.demo_tasks:noop"


def _text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


async def _zset(scripts: Scripts, key: str) -> list[tuple[str, float]]:
    raw = cast(list[tuple[bytes, float]], await scripts.client.zrange(key, 0, -1, withscores=True))
    return [(m.decode(), float(s)) for m, s in raw]


async def check_index(scripts: Scripts, keys: Keys) -> dict[str, dict[str, Any]]:
    """Assert the index matches the records; returns the entries by swarm id."""
    c = scripts.client
    records = {k: json.loads(v) for k, v in _text(await hash_fields(c, keys.swarms)).items()}
    entries = {k: json.loads(v) for k, v in _text(await hash_fields(c, keys.swarm_entries)).items()}
    active = {k: int(v) for k, v in _text(await hash_fields(c, keys.swarm_active)).items()}
    raw_profiles = _text(await hash_fields(c, keys.swarm_profiles))
    profiles = {k: json.loads(v) for k, v in raw_profiles.items() if k.isdigit()}
    room = {k: int(v) for k, v in _text(await hash_fields(c, keys.swarm_room)).items()}
    assert set(entries) == set(records)
    assert set(active) <= set(records)
    members: dict[str, int] = {}
    want: dict[tuple[str, str], list[str]] = {}
    want_room: dict[str, int] = {}
    for sid, rec in records.items():
        e, n = entries[sid], active.get(sid, 0)
        p = profiles[e["p"]]
        members[e["p"]] = members.get(e["p"], 0) + 1
        assert p["caps"] == ",".join(sorted(c for c in rec["caps"].split(",") if c))
        assert p["prio"] == rec["prio"] and p.get("handlers") == rec.get("handlers")
        assert (e["cap"], e["hosts"]) == (rec["capacity"], rec["hosts"])
        if rec["status"] != "active":
            assert e["st"] == ""
        elif rec.get("paused"):
            assert (e["st"], e["why"]) == ("held", "paused")
        elif not rec["hosts"]:
            assert (e["st"], e["why"]) == ("held", "without a live host")
        else:  # open, or held by dispatch for want of a live host
            assert e["st"] == "open" or e["why"] == "without a live host"
        if e["st"] == "open":
            want.setdefault(("open", e["p"]), []).append(sid)
            want_room[e["p"]] = want_room.get(e["p"], 0) + max(0, e["cap"] - n)
            if n < e["cap"]:
                want.setdefault(("rr", e["p"]), []).append(sid)
                want.setdefault(("load", e["p"]), []).append(sid)
        elif e["st"] == "held":
            want.setdefault(("held", e["p"]), []).append(sid)
    assert {p: d["n"] for p, d in profiles.items()} == members
    assert {p: r for p, r in room.items() if r} == {p: r for p, r in want_room.items() if r}
    for pid in profiles:
        for kind in ("open", "rr", "held", "load"):
            got = await _zset(scripts, keys.swarm_profile_index(kind, pid))
            assert sorted(m for m, _ in got) == sorted(want.get((kind, pid), [])), (kind, pid)
            if kind == "load":  # score: 2 x active + a host's memory load in [0, 1]
                assert all(0 <= s - 2 * active.get(m, 0) <= 1 for m, s in got)
    return entries


async def _active_of(store: TaskStore, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in await store.get_many(ids):
        if isinstance(t, Task) and t.status in ("assigned", "running"):
            counts[t.swarm] = counts.get(t.swarm, 0) + 1
    return counts


async def test_the_index_follows_the_swarm_lifecycle(scripts: Scripts, keys: Keys) -> None:
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await registry.register_swarm(swarm_spec("idle", ["x"]))
    assert (await check_index(scripts, keys))["idle"]["st"] == ""
    await host(scripts, keys, "w1", ("a", ["x"]), ("b", ["x"]), ("c", ["y", "x"]), capacity=3)
    await host(scripts, keys, "w2", ("d", ["x"]), capacity=3)
    await check_index(scripts, keys)
    coord = await leader(scripts, keys)
    ids = [f"t{i:02d}" for i in range(12)]  # every slot taken
    await store.submit([(task_spec(NOOP, id=t, capabilities=["x"]), None) for t in ids])
    assert await coord.dispatch_once() == 12
    await check_index(scripts, keys)
    swarms = {s.id: s for s in await registry.swarms()}
    assert {s: swarms[s].active for s in "abcd"} == await _active_of(store, ids)

    await registry.scale("a", 6)  # capacity grows to twice the agents: room again
    await registry.set_paused("b", True)
    assert (await check_index(scripts, keys))["b"]["why"] == "paused"
    more = [f"m{i}" for i in range(4)]
    await store.submit([(task_spec(NOOP, id=t, capabilities=["x"]), None) for t in more])
    await coord.dispatch_once()
    assert {t.swarm for t in await store.get_many(more) if isinstance(t, Task)} == {"a"}
    await registry.set_paused("b", False)
    await check_index(scripts, keys)

    for claimed in await store.claim("a", "w1", 4):
        assert await store.complete(claimed.id, claimed.token, "w1", None) == "completed"
    await registry.transition("c", "completed")  # its queued tasks go back to ready
    entries = await check_index(scripts, keys)
    assert entries["c"]["st"] == ""
    assert (await registry.get("c")).active == 0
    assert (await registry.get("a")).active == (await _active_of(store, ids + more)).get("a", 0)

    assert await registry.reap_workers(30_000, worker_id="w2") == ["w2"]  # d loses its host
    assert (await check_index(scripts, keys))["d"]["st"] == ""
    assert (await registry.get("d")).status == "interrupted"
    await host(scripts, keys, "w3", ("d", ["x"]), capacity=3)  # hosted again: active
    assert (await check_index(scripts, keys))["d"]["st"] == "open"
    assert await delete_swarm(scripts, keys, "c") == "completed"
    assert "c" not in await check_index(scripts, keys)


async def test_a_swarm_is_forgotten_only_once_its_tasks_are_not_held(
    scripts: Scripts, keys: Keys
) -> None:
    """Deleted (or archived) while a task of it still ran, a swarm's slot count went with it;
    the task's end then freed a slot of the swarm registered again under the id, which never
    took it, and that swarm went over its capacity (found in review)."""
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("s", []), ("z", []), capacity=1)
    coord = await leader(scripts, keys)
    await store.submit([(task_spec(NOOP, id=t), None) for t in ("old", "zz")])
    assert await coord.dispatch_once() == 2
    (old,) = await store.claim("s", "w1", 1)
    for sid in ("s", "z"):  # a finished swarm's held tasks end on their workers
        await registry.transition(sid, "completed")
    with pytest.raises(IllegalTransition, match="1 tasks assigned or running"):
        await delete_swarm(scripts, keys, "s")
    # the archive keeps them too, their period started again, and forgets one without any
    await scripts.client.zadd(keys.archive, {"s": 0, "z": 0})
    await scripts.client.hdel(keys.swarm_active, "z")  # as if its task had ended
    assert await registry.archive(1000) == ["z"]
    assert (await scripts.client.zscore(keys.archive, "s") or 0) > 1000
    assert await store.complete(old.id, old.token, "w1", None) == "completed"
    assert await delete_swarm(scripts, keys, "s") == "completed"

    await host(scripts, keys, "w1", ("s", []), capacity=1)  # the id registered again
    await store.submit([(task_spec(NOOP, id=t), None) for t in ("n1", "n2")])
    assert await coord.dispatch_once() == 1
    # one of them, or zz (queued on z when it finished: ready again), and no more
    held = await _active_of(store, ["n1", "n2", "zz"])
    assert (await registry.get("s")).active == 1 == held["s"]
    await check_index(scripts, keys)


async def test_one_finish_call_frees_each_swarms_slots_once(scripts: Scripts, keys: Keys) -> None:
    """finish_tasks adds up the slots it frees per swarm (decision 53): whatever the mix of
    outcomes, and when it frees more than the count says, the index ends as one by one would."""
    store = TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", []), ("b", []), capacity=4)
    coord = await leader(scripts, keys)
    ids = [f"t{i}" for i in range(8)]
    await store.submit([(task_spec(NOOP, id=t), None) for t in ids])
    assert await coord.dispatch_once() == 8
    claimed = [*await store.claim("a", "w1", 4), *await store.claim("b", "w1", 4)]
    a = [c for c in claimed if (await store.get(c.id)).swarm == "a"]
    b = [c for c in claimed if c not in a]
    outcomes = [
        Outcome(a[0].id, a[0].token, "ok", b"\xc0"),
        Outcome(a[0].id, a[0].token, "ok", b"\xc0"),  # duplicate: frees nothing more
        Outcome(a[1].id, a[1].token, "error", "boom"),  # retry
        Outcome(a[2].id, "0@w9", "error", "late"),  # stale: frees nothing
        Outcome(b[0].id, b[0].token, "permanent", "bad"),  # dead
        Outcome(b[1].id, b[1].token, "ok", b"\xc0"),
    ]
    assert await store.finish("w1", outcomes) == [
        "completed",
        "duplicate",
        "retry",
        "stale",
        "dead",
        "completed",
    ]
    await check_index(scripts, keys)
    swarms = {s.id: s.active for s in await SwarmRegistry(scripts, keys).swarms()}
    assert swarms == {"a": 2, "b": 2} == await _active_of(store, ids)
    # a count below the truth (set by hand, as if a slot had been freed twice): freeing two at
    # once stops at 0 and frees one slot of room, as two frees one by one would
    pid = (await check_index(scripts, keys))["b"]["p"]
    room = int(await hash_value(scripts.client, keys.swarm_room, pid))
    await scripts.client.hset(keys.swarm_active, "b", 1)
    rest = [Outcome(c.id, c.token, "ok", b"\xc0") for c in b[2:]]
    assert await store.finish("w1", rest) == ["completed", "completed"]
    assert await scripts.client.hget(keys.swarm_active, "b") is None
    assert int(await hash_value(scripts.client, keys.swarm_room, pid)) == room + 1
    load = dict(await _zset(scripts, keys.swarm_profile_index("load", pid)))
    assert 0 <= load["b"] <= 1


async def test_a_host_that_stops_beating_is_held_until_it_beats(
    scripts: Scripts, keys: Keys
) -> None:
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    await host(scripts, keys, "w1", ("a", ["x"]))
    await host(scripts, keys, "w2", ("b", ["x"]))
    await scripts.client.zadd(keys.heartbeats, {"w2": 0})  # w2's last beat is long past
    coord = SwarmCoordinator(scripts, keys, heartbeat_timeout_ms=60_000)
    assert await coord.election.try_acquire()
    ids = [f"t{i}" for i in range(4)]
    await store.submit([(task_spec(NOOP, id=t, capabilities=["x"]), None) for t in ids])
    assert await coord.dispatch_once() == 4
    assert {t.swarm for t in await store.get_many(ids) if isinstance(t, Task)} == {"a"}
    entries = await check_index(scripts, keys)
    assert (entries["b"]["st"], entries["b"]["why"]) == ("held", "without a live host")
    assert await registry.heartbeat("w2", {}, 0.5)
    more = [f"m{i}" for i in range(4)]
    await store.submit([(task_spec(NOOP, id=t, capabilities=["x"]), None) for t in more])
    await coord.dispatch_once()  # looks at the held swarm again first: b is open
    assert {t.swarm for t in await store.get_many(more) if isinstance(t, Task)} == {"b"}
    assert (await check_index(scripts, keys))["b"]["st"] == "open"


# -- dispatch at 2,000 swarms against a reference over every record ------------------------------

CAPSETS = [[], ["x"], ["y"], ["x", "y"]]


def _pick(strategy: str, task: dict[str, Any], swarms: list[dict[str, Any]], cursor: str) -> Any:
    need = set(task["caps"])
    eligible = sorted(
        (
            s
            for s in swarms
            if s["active"] < s["capacity"]
            and need <= set(s["caps"])
            and (s["handlers"] is None or NOOP in s["handlers"].split(","))
        ),
        key=lambda s: s["id"],
    )
    if not eligible:
        return None
    if strategy == "round_robin":
        return next((s for s in eligible if s["id"] > cursor), eligible[0])

    def key(s: dict[str, Any]) -> tuple[Any, ...]:
        load = (s["active"], s["id"])
        if strategy == "priority":
            return (abs(s["prio"] - task["prio"]), s["prio"], *load)
        if strategy == "capability":
            return (len(s["caps"]) - len(need), *load)
        return load

    return min(eligible, key=key)


@pytest.mark.parametrize("strategy", ["least_loaded", "round_robin", "priority", "capability"])
async def test_dispatch_at_2000_swarms_picks_as_the_strategy_says(
    scripts: Scripts, keys: Keys, strategy: str
) -> None:
    rng = random.Random(f"index-{strategy}")
    registry = SwarmRegistry(scripts, keys, max_swarms=2_001)
    store = TaskStore(scripts, keys)
    swarms: list[dict[str, Any]] = []
    for w in range(20):
        handlers = "other.module:fn" if w == 3 else None  # this worker's swarms may not run NOOP
        specs = []
        for j in range(100):
            sid = f"s{w * 100 + j:04d}"
            caps, prio = rng.choice(CAPSETS), rng.choice(sorted(PRIORITIES))
            spec = swarm_spec(sid, caps, priority=prio, capacity=rng.randint(1, 2))
            specs.append(SwarmSpec(**{**_fields(spec), "handlers": handlers}))
            swarms.append(
                {
                    "id": sid,
                    "caps": caps,
                    "prio": PRIORITIES[prio],
                    "capacity": spec.capacity,
                    "active": 0,
                    "handlers": handlers,
                }
            )
        await registry.host_swarms(f"w{w}", {"host": "test"}, specs)
    tasks: list[dict[str, Any]] = []
    for i in range(800):
        caps, prio = rng.choice(CAPSETS), rng.choice(sorted(PRIORITIES))
        tasks.append({"id": f"t{i:04d}", "caps": caps, "prio": PRIORITIES[prio], "name": prio})
    await store.submit(
        [
            (task_spec(NOOP, id=t["id"], capabilities=t["caps"], priority=t["name"]), None)
            for t in tasks
        ]
    )
    coord = await leader(scripts, keys, strategy, batch_size=1_000)
    await coord.dispatch_once()

    expected, cursor = {}, ""
    for t in sorted(tasks, key=lambda t: (t["prio"], t["id"])):  # the ready order
        chosen = _pick(strategy, t, swarms, cursor)
        if chosen is not None:
            chosen["active"] += 1
            cursor = chosen["id"]
            expected[t["id"]] = chosen["id"]
    got = {
        t.id: t.swarm
        for t in await store.get_many([t["id"] for t in tasks])
        if isinstance(t, Task) and t.status == "assigned"
    }
    assert got == expected
    await check_index(scripts, keys)


def _fields(spec: SwarmSpec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in spec.__struct_fields__}
