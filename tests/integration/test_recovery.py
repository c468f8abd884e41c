"""Recovery on a real Redis: plans, quarantine and fall-back, confidence, idempotent apply,
auto-recovery, the operator CLI, and a worker SIGKILLed mid-run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import click
import pytest
from click.testing import CliRunner

from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.errors import NoRecoverySource, NotInterrupted
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.ops.leadership import dispatch_tasks
from multiswarm.ops.recovery import Begin, Begun, begin_recoveries
from multiswarm.recovery import SwarmRecovery
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.services import run_state_manager
from multiswarm.state import SwarmStateManager
from multiswarm.tasks import TaskStore, task_spec

from .helpers import hash_value, leader, stream_entries

HANDLER = "multiswarm.demo_tasks:noop"


async def server_ms(client: Client) -> int:
    sec, usec = await client.time()
    return int(sec) * 1000 + int(usec) // 1000


async def interrupted_swarm(
    scripts: Scripts,
    keys: Keys,
    manager: SwarmStateManager,
    sid: str,
    *,
    tasks: int = 4,
    claim: int = 3,
    complete: int = 1,
    agents: int = 2,
    save: bool = True,
) -> dict[str, list[str]]:
    """A swarm hosted by worker w-<sid> that claimed ``claim`` tasks and completed ``complete``,
    saved its progress, then vanished without the registry reaping it; the swarm is then marked
    interrupted. Returns the task ids by what happened to them."""
    client = scripts.client
    registry, store = SwarmRegistry(scripts, keys), TaskStore(scripts, keys)
    wid = f"w-{sid}"
    await registry.host_swarms(
        wid, {"host": "test"}, [swarm_spec(sid, ["c"], agents=agents, capacity=2 * tasks)]
    )
    ids = [f"{sid}.t{i}" for i in range(tasks)]
    await store.submit([(task_spec(HANDLER, id=t, capabilities=["c"]), {"i": t}) for t in ids])
    # a leader dispatches to this swarm alone (each call elects its own: a failover)
    await client.delete(keys.leader)
    e = (await leader(scripts, keys)).election
    await dispatch_tasks(
        scripts,
        keys,
        e.fence,
        strategy="least_loaded",
        batch=100,
        scan=400,
        assign_timeout_ms=30_000,
        heartbeat_timeout_ms=0,
        capsets=[],
    )
    claimed = await store.claim(sid, wid, claim)
    for c in claimed[:complete]:
        assert await store.complete(c.id, c.token, wid, {"ok": c.id}) == "completed"
    running = [c.id for c in claimed]
    if save:
        now = int(time.time() * 1000)
        await manager.update_state(
            sid,
            lambda d: {
                "swarm": sid,
                "workers": {wid: {"running": running, "agents": agents, "at_ms": now}},
            },
        )
    await client.hdel(keys.workers, wid)
    await client.zrem(keys.heartbeats, wid)
    await registry.transition(sid, "interrupted")
    done = [c.id for c in claimed[:complete]]
    return {
        "completed": done,
        "running": running[complete:],
        "assigned": [t for t in ids if t not in running],
        "all": ids,
    }


async def task_states(store: TaskStore, ids: list[str]) -> dict[str, tuple[str, int]]:
    return {t.id: (t.status, t.updated_ms) for t in await store.get_many(ids) if t}


# -- plan and apply ------------------------------------------------------------------------------
async def test_plan_then_apply_requeues_in_flight_tasks_exactly_once(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    ids = await interrupted_swarm(scripts, keys, manager, "s1")
    store, registry = TaskStore(scripts, keys), SwarmRegistry(scripts, keys)
    before = await task_states(store, ids["all"])

    plan = await SwarmRecovery(manager).plan("s1")  # dry run: writes nothing
    assert await task_states(store, ids["all"]) == before
    assert (await registry.get("s1")).status == "interrupted"
    assert plan.source == "state" and plan.status == "interrupted"
    assert plan.requeue == sorted(ids["running"] + ids["assigned"])
    assert plan.completed == ids["completed"]
    assert plan.missing == [] and plan.elsewhere == []
    assert plan.agents == ["s1.a0", "s1.a1"]
    assert plan.confidence == 0.95
    assert plan.estimated_ms > 0

    outcome = await SwarmRecovery(manager).recover("s1")
    assert outcome.outcome == "applied" and outcome.plan_id == plan.plan_id
    assert sorted(outcome.requeued) == plan.requeue
    swarm = await registry.get("s1")
    assert (swarm.status, swarm.active, swarm.recoveries) == ("active", 0, 1)
    after = await task_states(store, ids["all"])
    assert {t: s for t, (s, _) in after.items()} == {
        **{t: "ready" for t in plan.requeue},
        **{t: "completed" for t in ids["completed"]},
    }
    assert int((await store.stats())["recovered_tasks"]) == len(plan.requeue)
    log = await client.lrange(keys.recovery_log("s1"), 0, -1)
    assert [json.loads(e)["plan"] for e in log] == [plan.plan_id]

    # the same plan again: nothing changes, not even a timestamp
    again = await SwarmRecovery(manager).apply(plan)
    assert again.outcome == "already_applied" and sorted(again.requeued) == plan.requeue
    assert await task_states(store, ids["all"]) == after
    assert int((await store.stats())["recovered_tasks"]) == len(plan.requeue)
    assert await client.llen(keys.recovery_log("s1")) == 1
    assert (await registry.get("s1")).recoveries == 1
    # a new apply of an active swarm: nothing to recover
    assert (await SwarmRecovery(manager).recover("s1")).outcome == "not_interrupted"
    with pytest.raises(NotInterrupted):
        await SwarmRecovery(manager).plan("s1")


async def test_tasks_running_on_a_live_worker_are_left_alone(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager
) -> None:
    ids = await interrupted_swarm(scripts, keys, manager, "s1", complete=0)
    # the worker is alive after all (e.g. a network split healed): its tasks keep their leases
    await SwarmRegistry(scripts, keys).host_swarms("w-other", {}, [swarm_spec("x", ["c"])])
    await scripts.client.hset(keys.workers, "w-s1", b'{"id": "w-s1"}')
    plan = await SwarmRecovery(manager).plan("s1")
    assert plan.requeue == ids["assigned"]
    assert plan.elsewhere == sorted(ids["running"])
    outcome = await SwarmRecovery(manager).recover("s1")
    assert outcome.requeued == ids["assigned"]
    tasks = await TaskStore(scripts, keys).get_many(ids["running"])
    assert all(t is not None and t.status == "running" for t in tasks)


async def test_crash_between_steps_is_resumed_without_requeueing_again(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager
) -> None:
    await interrupted_swarm(scripts, keys, manager, "s1")
    recovery = SwarmRecovery(manager)
    plan = await recovery.plan("s1", quarantine=True)
    # step 1 only, as if the applier died right after it
    step = Begin(
        plan_id=plan.plan_id,
        swarm="s1",
        interrupted_ms=plan.interrupted_ms,
        summary=b"{}",
        requeue=list(plan.requeue),
    )
    (begun,) = await begin_recoveries(scripts, keys, [step])
    assert isinstance(begun, Begun) and begun.state == "begun"
    registry = SwarmRegistry(scripts, keys)
    assert (await registry.get("s1")).status == "recovering"
    assert await SwarmRecovery(manager).discover() == ["s1"]
    resumed = await recovery.plan("s1")
    assert resumed.resume and resumed.plan_id == plan.plan_id and resumed.requeue == []
    outcome = await recovery.apply(resumed)
    assert outcome.outcome == "resumed" and sorted(outcome.requeued) == plan.requeue
    assert (await registry.get("s1")).status == "active"
    assert int((await TaskStore(scripts, keys).stats())["recovered_tasks"]) == len(plan.requeue)
    assert await SwarmRecovery(manager).discover() == []


async def test_a_plan_for_an_earlier_interruption_is_refused(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager
) -> None:
    await interrupted_swarm(scripts, keys, manager, "s1")
    plan = await SwarmRecovery(manager).plan("s1")
    registry = SwarmRegistry(scripts, keys)
    await registry.host_swarms("w2", {}, [swarm_spec("s1", ["c"])])  # re-hosted: active
    await registry.transition("s1", "interrupted")  # and lost again
    outcome = await SwarmRecovery(manager).apply(plan)
    assert outcome.outcome == "stale_plan"
    assert (await registry.get("s1")).status == "interrupted"


async def test_many_swarms_planned_and_applied_in_batches(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager
) -> None:
    sids = [f"b{i}" for i in range(12)]
    for sid in sids:
        await interrupted_swarm(scripts, keys, manager, sid, tasks=2, claim=1, complete=0)
    recovery = SwarmRecovery(manager)
    assert await recovery.discover() == sorted(sids)
    plans = await recovery.plan_many([*sids, "ghost"])
    assert isinstance(plans["ghost"], Exception)
    good = [p for p in plans.values() if not isinstance(p, Exception)]
    outcomes = await recovery.apply_many(good)
    assert [o.outcome for o in outcomes] == ["applied"] * len(sids)
    assert all(len(o.requeued) == 2 for o in outcomes)
    assert [o.outcome for o in await recovery.apply_many(good)] == ["already_applied"] * 12
    assert await recovery.discover() == []


# -- corrupted sources ---------------------------------------------------------------------------
async def _corrupt_state(client: Client, keys: Keys, sid: str) -> None:
    await client.hset(keys.state(sid), "data", b"\xff\xfenot json")


async def _corrupt_head(client: Client, key: str, how: str) -> None:
    entry = json.loads(cast(bytes, await client.lindex(key, 0)))
    if how == "checksum":
        entry["data"] = entry["data"].replace("running", "runnin_")
    elif how == "schema":
        entry["data"] = json.dumps([1, 2, 3])
        import hashlib

        entry["checksum"] = hashlib.sha256(entry["data"].encode()).hexdigest()
    await client.lset(key, 0, json.dumps(entry))


async def test_each_corrupted_source_is_quarantined_and_the_next_one_used(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    await interrupted_swarm(scripts, keys, manager, "s1")
    await manager.create_snapshot("s1", "older")
    await manager.create_snapshot("s1", "newer")
    await manager.create_checkpoint("s1", "cp")
    good = await manager.load_state("s1")
    assert good is not None
    await _corrupt_state(client, keys, "s1")
    await _corrupt_head(client, keys.checkpoints("s1"), "checksum")
    await _corrupt_head(client, keys.snapshots("s1"), "schema")

    dry = await SwarmRecovery(manager).plan("s1")
    assert dry.source == "snapshot" and dry.source_label == "older"
    assert [(r.source, r.quarantined) for r in dry.rejected] == [
        ("state", False),
        ("checkpoint", False),
        ("snapshot", False),
    ]
    assert await client.llen(keys.quarantine("s1")) == 0  # a dry run moves nothing

    outcome = await SwarmRecovery(manager).recover("s1")
    assert outcome.outcome == "applied" and outcome.source == "snapshot"
    quarantined = await manager.list_quarantine("s1")
    reasons = {q["kind"]: q["reason"] for q in quarantined}
    assert reasons["state"].startswith("bad encoding")
    assert reasons["checkpoint"] == "checksum mismatch"
    assert reasons["snapshot"].startswith("wrong schema")
    assert await client.llen(keys.checkpoints("s1")) == 0
    assert await client.llen(keys.snapshots("s1")) == 1
    restored = await manager.load_state("s1")  # the snapshot became the current state
    assert restored is not None and restored.data == good.data
    assert restored.version == good.version + 1


@pytest.mark.parametrize("broken", ["state", "checkpoint", "snapshot"])
async def test_fallback_from_each_corrupted_source(
    broken: str, scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    await interrupted_swarm(scripts, keys, manager, "s1")
    await manager.create_snapshot("s1")
    await manager.create_checkpoint("s1", "cp")
    if broken == "state":
        await _corrupt_state(client, keys, "s1")
        expected = "checkpoint"
    else:
        await client.hdel(keys.state("s1"), "data")
        if broken == "checkpoint":
            await _corrupt_head(client, keys.checkpoints("s1"), "checksum")
            expected = "snapshot"
        else:
            await client.delete(keys.checkpoints("s1"))
            await _corrupt_head(client, keys.snapshots("s1"), "schema")
            expected = "none"
    outcome = await SwarmRecovery(manager).recover("s1")
    assert outcome.source == expected and outcome.outcome == "applied"
    assert [q["kind"] for q in await manager.list_quarantine("s1")] == [broken]
    if expected == "none":
        assert outcome.confidence == 0.5


async def test_requested_source_must_be_valid(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager
) -> None:
    await interrupted_swarm(scripts, keys, manager, "s1")
    with pytest.raises(NoRecoverySource):
        await SwarmRecovery(manager).plan("s1", source="checkpoint")
    await manager.create_checkpoint("s1", "cp")
    plan = await SwarmRecovery(manager).plan("s1", source="checkpoint")
    assert plan.source == "checkpoint" and plan.confidence == pytest.approx(0.905)
    assert [a.source for a in plan.alternatives] == ["state"]


# -- confidence ----------------------------------------------------------------------------------
async def _age_state(client: Client, keys: Keys, sid: str, before_interruption_ms: int) -> None:
    swarm = json.loads(await hash_value(client, keys.swarms, sid))
    await client.hset(keys.state(sid), "updated_ms", swarm["status_ms"] - before_interruption_ms)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("fresh_complete", 0.95),
        ("old_complete", 0.5 + 0.45 * 2 ** (-(1_800_000 - 60_000) / 300_000)),
        ("fresh_partial", 0.5 + 0.45 * (3 / 4) * (1 / 2)),
        ("five_minutes", 0.5 + 0.45 * 2 ** (-(300_000 - 60_000) / 300_000)),
    ],
)
async def test_confidence_of_fresh_old_partial_and_complete_sources(
    case: str,
    expected: float,
    scripts: Scripts,
    keys: Keys,
    manager: SwarmStateManager,
    client: Client,
) -> None:
    await interrupted_swarm(scripts, keys, manager, "s1", tasks=3, claim=2, complete=1)
    if case == "old_complete":
        await _age_state(client, keys, "s1", 1_800_000)
    elif case == "five_minutes":
        await _age_state(client, keys, "s1", 300_000)
    elif case == "fresh_partial":
        # the state names a task whose record is gone and knows 1 of the 2 agents
        await manager.update_state(
            "s1",
            lambda d: {
                "swarm": "s1",
                "workers": {
                    "w-s1": {
                        **d["workers"]["w-s1"],
                        "agents": 1,
                        "running": [*d["workers"]["w-s1"]["running"], "s1.lost"],
                    }
                },
            },
        )
    plan = await SwarmRecovery(manager).plan("s1")
    assert plan.confidence == pytest.approx(expected, abs=1e-4)
    auto = plan.confidence >= 0.75
    assert auto is (case in ("fresh_complete", "five_minutes"))
    if case == "fresh_partial":
        assert plan.missing == ["s1.lost"]
        assert (plan.evidence.tasks_known, plan.evidence.tasks_complete) == (4, 3)


# -- the state-manager process -------------------------------------------------------------------
async def _until(cond: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_state_manager_recovers_confident_plans_and_leaves_the_rest(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    await interrupted_swarm(scripts, keys, manager, "sure")
    await interrupted_swarm(scripts, keys, manager, "unsure")
    await _age_state(client, keys, "unsure", 3_600_000)
    registry = SwarmRegistry(scripts, keys)
    await registry.host_swarms("w-live", {}, [swarm_spec("live", ["c"])])
    await manager.save_state("live", {"swarm": "live"})
    stop = asyncio.Event()
    runner = asyncio.create_task(run_state_manager(manager, stop, 60_000, recovery_poll_ms=50))
    try:

        async def recovered() -> bool:
            return (await registry.get("sure")).status == "active"

        await _until(recovered)
        # active swarms get their automatic snapshots from the same process
        await _until(lambda: _has_snapshot(client, keys, "live"))
    finally:
        stop.set()
        await runner
    assert (await registry.get("unsure")).status == "interrupted"
    log = [json.loads(e) for e in await client.lrange(keys.recovery_log("sure"), 0, -1)]
    assert len(log) == 1 and log[0]["by"].startswith("state-manager")


async def test_swarm_without_host_is_recovered_once_and_never_made_active(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    """Its only worker left (re-registered without it): recovery restores its state but leaves
    it interrupted, once, until a worker hosts it (issue 14, item 9)."""
    registry = SwarmRegistry(scripts, keys)
    await registry.host_swarms("w-lone", {}, [swarm_spec("lone", ["c"])])
    await manager.save_state("lone", {"swarm": "lone"})
    await registry.host_swarms("w-lone", {}, [])  # its host drops it: interrupted, no host
    assert (await registry.get("lone")).status == "interrupted"
    manager.auto_recover_min_confidence = 0.0  # a bare state: confidence 0.5, recover anyway
    stop = asyncio.Event()
    runner = asyncio.create_task(run_state_manager(manager, stop, 60_000, recovery_poll_ms=50))
    try:

        async def recovered() -> bool:
            return bool(await client.llen(keys.recovery_log("lone")))

        await _until(recovered)
        await asyncio.sleep(0.5)  # ten more rounds: it is not recovered again
    finally:
        stop.set()
        await runner
    assert await client.llen(keys.recovery_log("lone")) == 1
    lone = await registry.get("lone")
    assert lone.status == "interrupted" and not lone.host_workers
    await registry.host_swarms("w-new", {}, [swarm_spec("lone", ["c"])])
    assert (await registry.get("lone")).status == "active"


async def _has_snapshot(client: Client, keys: Keys, sid: str) -> bool:
    return bool(await client.llen(keys.snapshots(sid)))


# -- operator CLI --------------------------------------------------------------------------------
def _cli() -> click.Group:
    from multiswarm.cli import cli
    from multiswarm.cli_recover import checkpoint, recover, snapshot

    for group in (recover, snapshot, checkpoint):
        if group.name not in cli.commands:
            cli.add_command(group)
    return cli


def invoke(settings: Settings, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(
        _cli(), ["--redis-url", settings.redis_url, "--namespace", settings.namespace, *args]
    )
    assert result.exit_code == code, (result.output, result.exception)
    return json.loads(result.stdout) if "--json" in args and code == 0 else result.output


def run(
    coro_fn: Callable[[Scripts, Keys, SwarmStateManager], Awaitable[Any]], settings: Settings
) -> Any:
    async def main() -> Any:
        client = connect(settings)
        try:
            scripts, keys = Scripts(client), Keys(settings.namespace)
            return await coro_fn(scripts, keys, SwarmStateManager(scripts, keys))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_cli_list_plan_apply_twice_and_all(settings: Settings) -> None:
    async def setup(scripts: Scripts, keys: Keys, m: SwarmStateManager) -> None:
        for sid in ("c1", "c2", "c3"):
            await interrupted_swarm(scripts, keys, m, sid)
        swarm = json.loads(await hash_value(scripts.client, keys.swarms, "c3"))
        await scripts.client.hset(keys.state("c3"), "updated_ms", swarm["status_ms"] - 3_600_000)

    run(setup, settings)

    rows = invoke(settings, "recover", "list", "--json")
    assert [(r["swarm"], r["source"], r["auto"]) for r in rows] == [
        ("c1", "state", True),
        ("c2", "state", True),
        ("c3", "state", False),
    ]
    assert "c1" in invoke(settings, "recover", "list")

    out = invoke(settings, "recover", "plan", "c1", "--json")
    assert out["plan"]["confidence"] == 0.95 and len(out["plan"]["requeue"]) == 3
    assert "restore" not in out["plan"]
    assert "tasks to re-queue: 3" in invoke(settings, "recover", "plan", "c1")

    invoke(settings, "recover", "apply", "c3", "--min-confidence", "0.8", "--yes", code=1)
    applied = invoke(settings, "recover", "apply", "c1", "--yes", "--json")
    assert applied["outcome"] == "applied" and len(applied["requeued"]) == 3
    again = invoke(settings, "recover", "apply", "c1", "--yes", "--json")
    assert again["outcome"] == "not_interrupted"

    report = invoke(settings, "recover", "all", "--yes", "--json")
    assert [(o["swarm"], o["outcome"]) for o in report["outcomes"]] == [("c2", "applied")]
    assert [s["swarm"] for s in report["skipped"]] == ["c3"]
    text = invoke(settings, "recover", "all", "--min-confidence", "0.5", "--yes")
    assert "c3: applied from state" in text
    assert invoke(settings, "recover", "list", "--json") == []
    log = invoke(settings, "recover", "log", "c1", "--json")
    assert log[0]["by"] == "operator" and len(log[0]["requeued"]) == 3


def test_cli_snapshots_checkpoints_and_quarantine(settings: Settings) -> None:
    async def setup(scripts: Scripts, keys: Keys, m: SwarmStateManager) -> None:
        await m.save_state("k1", {"swarm": "k1", "n": 1})

    run(setup, settings)
    assert invoke(settings, "snapshot", "create", "k1", "--json")["version"] == 1
    invoke(settings, "snapshot", "create", "nothing-here", code=1)
    snaps = invoke(settings, "snapshot", "list", "k1", "--json")
    assert [(s["version"], s["label"], s["integrity"]) for s in snaps] == [(1, "manual", "ok")]
    assert invoke(settings, "checkpoint", "create", "k1", "before", "--json")["version"] == 1
    invoke(settings, "checkpoint", "create", "k1", "bad:name", code=2)
    assert [c["label"] for c in invoke(settings, "checkpoint", "list", "k1", "--json")] == [
        "before"
    ]

    async def change(scripts: Scripts, keys: Keys, m: SwarmStateManager) -> None:
        await m.save_state("k1", {"swarm": "k1", "n": 2})

    run(change, settings)
    out = invoke(settings, "snapshot", "restore", "k1", snaps[0]["id"], "--yes", "--json")
    assert out["version"] == 3
    assert (
        invoke(settings, "checkpoint", "restore", "k1", "before", "--yes", "--json")["version"] == 4
    )
    assert "manual" in invoke(settings, "snapshot", "list", "k1")
    assert invoke(settings, "recover", "quarantine", "k1", "--json") == []
    assert "nothing quarantined" in invoke(settings, "recover", "quarantine", "k1")

    async def final(scripts: Scripts, keys: Keys, m: SwarmStateManager) -> Any:
        return await m.load_state("k1")

    record = run(final, settings)
    assert record.data == {"swarm": "k1", "n": 1} and record.version == 4


# -- a worker SIGKILLed mid-run ------------------------------------------------------------------
@pytest.mark.slow
def test_sigkilled_worker_swarm_recovered_by_cli_and_every_task_completed_once(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(heartbeat_timeout_ms=1500, lease_ms=1500, task_lease_ms=3000)
    total = 24
    group = ProcessGroup(settings, log_dir=tmp_path)
    try:
        group.spawn("registry", ["registry"])
        group.spawn("coordinator", ["coordinator", "--id", "coord"])
        victim = group.spawn("worker-a", ["worker", "--id", "wa", "--swarm", "rs:work:2"])

        async def start(scripts: Scripts, keys: Keys, m: SwarmStateManager) -> None:
            registry = SwarmRegistry(scripts, keys)
            await _until(lambda: _status_is(registry, "rs", "active"), 60)
            await TaskStore(scripts, keys).submit(
                [
                    (
                        task_spec(
                            "multiswarm.demo_tasks:sleep_then_return",
                            id=f"r{i}",
                            capabilities=["work"],
                            lease_ms=3000,
                        ),
                        {"seconds": 0.25},
                    )
                    for i in range(total)
                ]
            )
            store = TaskStore(scripts, keys)

            async def some_done() -> bool:
                counts = await store.counts()
                return counts["completed"] >= 4 and counts["running"] >= 1

            await _until(some_done, 60)

        run(start, settings)
        group.kill(victim)

        async def wait_interrupted(scripts: Scripts, keys: Keys, m: SwarmStateManager) -> None:
            await _until(lambda: _status_is(SwarmRegistry(scripts, keys), "rs", "interrupted"), 60)

        run(wait_interrupted, settings)

        plan = invoke(settings, "recover", "plan", "rs", "--json")["plan"]
        assert plan["source"] == "state" and 0.5 <= plan["confidence"] <= 0.95
        assert plan["agents"] == ["rs.a0", "rs.a1"]
        applied = invoke(settings, "recover", "apply", "rs", "--yes", "--json")
        assert applied["outcome"] == "applied"
        # nobody hosts it yet: recovered, it waits interrupted (never active without a host)
        run(wait_interrupted, settings)
        group.spawn("worker-b", ["worker", "--id", "wb", "--swarm", "rs:work:2"])

        async def wait_active(scripts: Scripts, keys: Keys, m: SwarmStateManager) -> None:
            await _until(lambda: _status_is(SwarmRegistry(scripts, keys), "rs", "active"), 60)

        run(wait_active, settings)
        assert (
            invoke(settings, "recover", "apply", "rs", "--yes", "--json")["outcome"]
            == "not_interrupted"
        )

        async def finish(scripts: Scripts, keys: Keys, m: SwarmStateManager) -> Any:
            store = TaskStore(scripts, keys)

            async def all_done() -> bool:
                return (await store.counts())["completed"] == total

            await _until(all_done, 120)
            completions = await stream_entries(scripts.client, keys.completions, "-", "+")
            swarm = await SwarmRegistry(scripts, keys).get("rs")
            return [f[b"task"].decode() for _, f in completions], await store.counts(), swarm

        recorded, counts, swarm = run(finish, settings)
        assert sorted(recorded) == sorted(f"r{i}" for i in range(total))  # each exactly once
        assert counts["completed"] == total and counts["dead"] == 0
        assert swarm.status == "active" and swarm.recoveries >= 1
    finally:
        group.stop_all()


async def _status_is(registry: SwarmRegistry, sid: str, status: str) -> bool:
    try:
        return (await registry.get(sid)).status == status
    except Exception:
        return False
